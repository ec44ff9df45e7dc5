/**
 * The report's charts as Vega-Lite specs plus the numbers behind each: lr_find, training curves, confusion matrix.
 * Spec builders are pure; {@link renderChart} turns a built chart into a PNG. All maths is Vega-Lite's except the
 * lr_find slice/suggestion (fastai's, in `coordinator/interpret/lr-find-plot.ts`) and layout.
 */
import type { TopLevelSpec } from 'vega-lite';
import { lrFindPlotData, type LrFindPlotData } from '../interpret/lr-find-plot.js';
import { TrainerError } from '../../contract/errors.js';
import { renderVegaLite, type RenderedPng } from './render.js';
import type { LrFindRecord, StageRecord } from './types.js';

/** A chart ready to render: its spec and the JSON written beside its PNG. */
export interface Chart<D> {
  readonly spec: TopLevelSpec;
  readonly data: D;
}

/** Numbers behind the lr_find chart. */
export interface LrFindChartData extends LrFindPlotData {
  readonly name: string;
  readonly skipStart: number;
  readonly skipEnd: number;
}

/**
 * lr_find chart: log-x learning rate vs smoothed loss, first 10 / last 5 points skipped (fastai 1.0.61
 * `Recorder.plot`), steepest-descent suggestion marked in red with its lr as label.
 *
 * @throws TrainerError `ERR_DATA` when lrs and losses differ in length
 */
export function lrFindChart(record: LrFindRecord): Chart<LrFindChartData> {
  const plot = lrFindPlotData(record.lrs, record.smoothedLosses);
  const data: LrFindChartData = { name: record.name, skipStart: 10, skipEnd: 5, ...plot };
  const points = plot.lrs.map((lr, i) => ({ lr, loss: plot.losses[i] }));
  const marks: object[] = [
    { data: { values: points }, mark: { type: 'line', strokeWidth: 2 } },
  ];
  if (plot.steepestIndex >= 0) {
    const s = { lr: plot.steepestLr, loss: plot.losses[plot.steepestIndex], label: `steepest: ${plot.steepestLr.toExponential(2)}` };
    marks.push({ data: { values: [s] }, mark: { type: 'point', filled: true, size: 120, color: '#d62728' } });
    marks.push({
      data: { values: [s] },
      mark: { type: 'text', align: 'left', dx: 9, dy: -9, fontSize: 12, color: '#d62728' },
      encoding: { text: { field: 'label' } },
    });
  }
  const subtitle = lrFindSubtitle(plot);
  const spec = {
    title: { text: `lr_find — ${record.name}`, subtitle },
    width: 560,
    height: 340,
    encoding: {
      x: { field: 'lr', type: 'quantitative', scale: { type: 'log' }, axis: { format: '.0e', title: 'Learning Rate' } },
      y: { field: 'loss', type: 'quantitative', scale: { zero: false }, title: 'Loss' },
    },
    layer: marks,
  } as TopLevelSpec;
  return { spec, data };
}

/**
 * The lr_find plot's subtitle: fastai's two suggestions, each named only when it lies on the plotted lr range (the
 * plot drops the first 10 and last 5 points, so min loss / 10 can fall left of it: then it says so instead).
 */
export function lrFindSubtitle(plot: LrFindPlotData): string {
  if (plot.steepestIndex < 0) return 'not enough points to plot';
  const lo = Math.min(...plot.lrs), hi = Math.max(...plot.lrs);
  const onPlot = (lr: number): string => (Number.isFinite(lr) && lr >= lo && lr <= hi ? lr.toExponential(2) : lr < lo ? 'left of the plotted range' : 'right of the plotted range');
  return `min numerical gradient: ${onPlot(plot.steepestLr)}   ·   min loss / 10: ${onPlot(plot.minLossLrDiv10)}`;
}

/** Numbers behind the training-curves chart. */
export interface TrainingCurvesData {
  /** One row per optimiser step, iteration counted from 1 across all stages. */
  readonly steps: { iteration: number; stage: string; loss: number; lrs: readonly number[] }[];
  /** One row per epoch, placed at the iteration that ended it. */
  readonly epochs: { iteration: number; stage: string; epoch: number; validLoss: number; errorRate: number }[];
  /** Iteration at which each stage after the first begins (stage boundaries). */
  readonly stageStarts: { iteration: number; stage: string }[];
}

/**
 * Lays the stages end to end on one iteration axis; validation points sit at each epoch's last iteration
 * (fastai `Recorder.plot_losses` places them at the cumulative batch count).
 *
 * @throws TrainerError `ERR_DATA` when a stage's step count is not a multiple of its epoch count
 */
export function trainingCurvesData(stages: readonly StageRecord[]): TrainingCurvesData {
  const out: TrainingCurvesData = { steps: [], epochs: [], stageStarts: [] };
  let offset = 0;
  for (const stage of stages) {
    if (stage.epochs.length > 0 && stage.steps.length % stage.epochs.length !== 0) {
      throw new TrainerError('ERR_DATA',
        `report: stage "${stage.name}" has ${stage.steps.length} steps, expected a multiple of its ${stage.epochs.length} epochs`);
    }
    if (offset > 0) out.stageStarts.push({ iteration: offset + 1, stage: stage.name });
    stage.steps.forEach((s, i) => out.steps.push({ iteration: offset + i + 1, stage: stage.name, loss: s.loss, lrs: s.lrs }));
    const perEpoch = stage.epochs.length > 0 ? stage.steps.length / stage.epochs.length : 0;
    stage.epochs.forEach((e, i) => out.epochs.push({
      iteration: offset + (i + 1) * perEpoch, stage: stage.name, epoch: e.epoch, validLoss: e.validLoss, errorRate: e.errorRate,
    }));
    offset += stage.steps.length;
  }
  return out;
}

const ITERATION_X = { field: 'iteration', type: 'quantitative', title: 'Iterations (batches)', scale: { domainMin: 0 },
  axis: { format: 'd', tickMinStep: 1 } } as const;

/** Dashed rules at stage starts; with `labelled`, stage names just above the plot frame (top panel only). */
function stageRules(starts: TrainingCurvesData['stageStarts'], labelled: boolean): object[] {
  if (starts.length === 0) return [];
  const rule = { data: { values: starts }, mark: { type: 'rule', strokeDash: [4, 4], color: '#888' }, encoding: { x: ITERATION_X } };
  if (!labelled) return [rule];
  return [rule, {
    data: { values: starts },
    mark: { type: 'text', align: 'left', baseline: 'bottom', dx: 2, y: -3, color: '#555' },
    encoding: { x: ITERATION_X, text: { field: 'stage' } },
  }];
}

/**
 * Training curves, three panels on one iteration axis: train loss per step with valid loss per epoch; error_rate
 * per epoch; learning rate per layer group over steps (log y, as groups differ by 10–100×).
 *
 * @throws TrainerError `ERR_DATA` when a stage's step count is not a multiple of its epoch count
 */
export function trainingCurvesChart(stages: readonly StageRecord[]): Chart<TrainingCurvesData> {
  const data = trainingCurvesData(stages);
  const lossRows = [
    ...data.steps.map((s) => ({ iteration: s.iteration, loss: s.loss, series: 'train (per batch)' })),
    ...data.epochs.map((e) => ({ iteration: e.iteration, loss: e.validLoss, series: 'valid (per epoch)' })),
  ];
  const lrRows = data.steps.flatMap((s) => s.lrs.map((lr, g) => ({ iteration: s.iteration, lr, group: `group ${g}` })));
  const panel = { width: 640, height: 200 };
  const spec = {
    title: 'Training curves',
    resolve: { scale: { color: 'independent', strokeDash: 'independent' } },
    vconcat: [
      { ...panel, layer: [
        { data: { values: lossRows }, mark: { type: 'line', strokeWidth: 1.5 }, encoding: {
          x: ITERATION_X, y: { field: 'loss', type: 'quantitative', title: 'Loss' },
          color: { field: 'series', type: 'nominal', title: null, scale: { range: ['#1f77b4', '#ff7f0e'] } } } },
        { data: { values: lossRows.filter((r) => r.series.startsWith('valid')) }, mark: { type: 'point', filled: true, color: '#ff7f0e' },
          encoding: { x: ITERATION_X, y: { field: 'loss', type: 'quantitative' } } },
        ...stageRules(data.stageStarts, true)] },
      { ...panel, layer: [
        { data: { values: data.epochs }, mark: { type: 'line', color: '#2ca02c', point: { color: '#2ca02c', filled: true } }, encoding: {
          x: ITERATION_X, y: { field: 'errorRate', type: 'quantitative', title: 'error_rate (valid)', scale: { zero: false } } } },
        ...stageRules(data.stageStarts, false)] },
      { ...panel, layer: [
        { data: { values: lrRows }, mark: { type: 'line', strokeWidth: 1.5 }, encoding: {
          x: ITERATION_X, y: { field: 'lr', type: 'quantitative', title: 'Learning rate', scale: { type: 'log' }, axis: { format: '.0e', tickCount: 6 } },
          // Dashes as well as colours: groups with equal lrs (group 0 and 1 while frozen) draw on top of each other.
          color: { field: 'group', type: 'nominal', title: 'layer group' },
          strokeDash: { field: 'group', type: 'nominal', title: 'layer group' } } },
        ...stageRules(data.stageStarts, false)] },
    ],
  } as unknown as TopLevelSpec;
  return { spec, data };
}

/** Numbers behind the confusion-matrix chart. */
export interface ConfusionMatrixData {
  readonly classes: readonly string[];
  /** Rows = actual, columns = predicted. */
  readonly matrix: readonly (readonly number[])[];
}

/** Cell edge of the confusion-matrix heatmap, layout units: 20 above 20 classes (37 → 740 × 740), else 36. */
const cmCell = (classes: number): number => (classes > 20 ? 20 : 36);
/** Upper estimate of DejaVu Sans's mean advance width per character of a breed name, em (measured here ≈ 0.5 on the 37 breed names). */
const DEJAVU_EM_PER_CHAR = 0.56;

/**
 * Confusion-matrix heatmap: rows = actual, columns = predicted (fastai `plot_confusion_matrix`), class order kept,
 * non-zero counts written in their cells (zeros left blank so 37 × 37 stays readable).
 *
 * @param classes - class names, `[c]`
 * @param matrix - counts `[c][c]`, rows = actual
 * @throws TrainerError `ERR_DATA` when the matrix is not c × c
 */
export function confusionMatrixChart(classes: readonly string[], matrix: readonly (readonly number[])[]): Chart<ConfusionMatrixData> {
  const c = classes.length;
  if (matrix.length !== c || matrix.some((row) => row.length !== c)) {
    throw new TrainerError('ERR_DATA', `report: confusion matrix must be ${c} × ${c} (one row and column per class)`);
  }
  const cells = matrix.flatMap((row, i) => row.map((count, j) => ({ actual: classes[i], predicted: classes[j], count })));
  const max = Math.max(1, ...cells.map((cell) => cell.count));
  const labelFontSize = c > 20 ? 10 : 12;
  // Vega places axis titles after its own estimate of label width (0.8 em per character without a canvas), far
  // from the real DejaVu labels (≈ 0.6 em); put the titles just past the real labels instead.
  const labelPx = Math.ceil(Math.max(...classes.map((name) => name.length)) * labelFontSize * DEJAVU_EM_PER_CHAR);
  const axis = { labelLimit: 1000, labelFontSize };
  const spec = {
    title: 'Confusion matrix',
    width: c * cmCell(c),
    height: c * cmCell(c),
    data: { values: cells },
    encoding: {
      x: { field: 'predicted', type: 'nominal', sort: classes, title: 'Predicted',
        axis: { ...axis, labelAngle: -90, orient: 'bottom', titleY: labelPx + 14, titleBaseline: 'top' } },
      y: { field: 'actual', type: 'nominal', sort: classes, title: 'Actual',
        axis: { ...axis, titleX: -(labelPx + 14), titleBaseline: 'bottom' } },
    },
    layer: [
      { mark: { type: 'rect', stroke: '#e8e8e8', strokeWidth: 0.5 }, encoding: {
        color: { condition: { test: 'datum.count === 0', value: '#ffffff' },
          field: 'count', type: 'quantitative', scale: { scheme: 'blues', domain: [0, max] }, title: 'count' } } },
      { transform: [{ filter: 'datum.count > 0' }], mark: { type: 'text', fontSize: c > 20 ? 9 : 12 }, encoding: {
        text: { field: 'count', type: 'quantitative' },
        color: { condition: { test: `datum.count > ${max / 2}`, value: 'white' }, value: 'black' } } },
    ],
  } as unknown as TopLevelSpec;
  return { spec, data: { classes, matrix } };
}

/**
 * Renders a chart built by this module to PNG.
 *
 * @param scale - pixels per layout unit, > 0
 * @throws TrainerError `ERR_INTERNAL` when rendering fails
 */
export function renderChart<D>(chart: Chart<D>, scale: number): Promise<RenderedPng> {
  return renderVegaLite(chart.spec, scale);
}
