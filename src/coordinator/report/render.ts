/**
 * Server-side chart rendering: Vega-Lite spec → Vega → SVG (`vega.View#toSVG`, no canvas) → PNG with sharp
 * (librsvg). Text is drawn by librsvg through fontconfig, so a font must be installed (Debian: `fonts-dejavu-core`).
 */
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import sharp from 'sharp';
import { TrainerError } from '../../contract/errors.js';

/** Font family asked of fontconfig for every chart and picture title; DejaVu ships with `fonts-dejavu-core`. */
export const REPORT_FONT = 'DejaVu Sans';

/** A rendered picture. */
export interface RenderedPng {
  /** PNG bytes, RGB on white. */
  readonly png: Buffer;
  /** Width, pixels. */
  readonly width: number;
  /** Height, pixels. */
  readonly height: number;
}

/** Shared Vega-Lite config: white background, one font, readable sizes. */
export const CHART_CONFIG = Object.freeze({
  background: 'white',
  font: REPORT_FONT,
  title: { fontSize: 15, anchor: 'start' },
  axis: { labelFontSize: 11, titleFontSize: 12 },
  legend: { labelFontSize: 11, titleFontSize: 12 },
});

/**
 * Renders a Vega-Lite spec to PNG.
 *
 * @param spec - Vega-Lite spec with inline data (no loaders are used; nothing is fetched)
 * @param scale - pixel ratio of the PNG relative to the spec's layout units, > 0; 2 gives crisp text
 * @throws TrainerError `ERR_INTERNAL` when Vega-Lite cannot compile the spec or sharp cannot rasterise the SVG
 */
export async function renderVegaLite(spec: TopLevelSpec, scale: number): Promise<RenderedPng> {
  let svg: string;
  try {
    const vgSpec = compile({ ...spec, config: { ...CHART_CONFIG, ...(spec.config ?? {}) } } as TopLevelSpec).spec;
    const view = new vega.View(vega.parse(vgSpec), { renderer: 'none' });
    try {
      svg = await view.toSVG(scale);
    } finally {
      view.finalize();
    }
  } catch (err) {
    throw new TrainerError('ERR_INTERNAL', `chart: Vega-Lite/Vega could not render the spec: ${String(err)}`, { cause: err });
  }
  return svgToPng(svg, scale);
}

/** White margin kept around a chart after trimming, layout units (multiplied by the scale). */
const CHART_MARGIN = 8;

/**
 * Rasterises an SVG document to PNG on a white background. With `trimScale`, the white border is trimmed and a
 * margin of 8 layout units put back: without a canvas, Vega estimates text widths at 0.8 em per character, which
 * leaves wide empty bands beside long axis labels.
 *
 * @param svg - a complete SVG document whose `width`/`height` attributes are the output size in pixels
 * @param trimScale - when set (> 0), trim the white border and keep `8 × trimScale` pixels of margin
 * @throws TrainerError `ERR_INTERNAL` when librsvg rejects the document
 */
export async function svgToPng(svg: string, trimScale?: number): Promise<RenderedPng> {
  try {
    const flat = await sharp(Buffer.from(svg)).flatten({ background: '#ffffff' }).png().toBuffer();
    let img = sharp(flat);
    if (trimScale !== undefined) {
      const m = Math.round(CHART_MARGIN * trimScale);
      img = sharp(await img.trim({ background: '#ffffff', threshold: 0 }).toBuffer())
        .extend({ top: m, bottom: m, left: m, right: m, background: '#ffffff' });
    }
    const { data, info } = await img.png().toBuffer({ resolveWithObject: true });
    return { png: data, width: info.width, height: info.height };
  } catch (err) {
    throw new TrainerError('ERR_INTERNAL', `chart: sharp could not rasterise the SVG: ${String(err)}`, { cause: err });
  }
}

/** Escapes text for SVG/HTML element content and double-quoted attributes. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

async function inkWidth(text: string): Promise<number> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="400" height="40"><text x="4" y="30" font-size="28" ` +
    `font-family="${REPORT_FONT}, sans-serif" fill="#000">${escapeXml(text)}</text></svg>`;
  const flat = await sharp(Buffer.from(svg)).flatten({ background: '#ffffff' }).png().toBuffer();
  const { info } = await sharp(flat).trim({ background: '#ffffff', threshold: 10 }).toBuffer({ resolveWithObject: true });
  return info.width;
}

/**
 * True when librsvg draws real glyphs. Without any font, pango draws same-width "missing glyph" boxes, so the check
 * compares the inked width of "iiiiiiii" and "WWWWWWWW": DejaVu Sans advances i = 0.278 em, W = 0.989 em (measured
 * here: 58 vs 220 px at 28 px); boxes give equal widths. On false, install a font (Debian: `fonts-dejavu-core`).
 */
export async function fontsRenderText(): Promise<boolean> {
  try {
    const [narrow, wide] = await Promise.all([inkWidth('iiiiiiii'), inkWidth('WWWWWWWW')]);
    return wide > 2 * narrow;
  } catch {
    return false; // nothing drawn at all: trim of an all-white image fails
  }
}
