/**
 * The coordinator's Prometheus endpoint: serves `/metrics` (prom-client text format) for the whole run.
 *
 * Worker metrics reach Prometheus through here, labelled by `rank` (workers send a small stats record with each
 * step result), so a run has exactly one scrape target; see docs/metrics.md for why.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { TrainerError } from '../../contract/errors.js';
import { shownValue } from '../../contract/config.js';
import {
  DEFAULT_TRAINING_METRICS,
  TrainingMetrics,
  type TrainingMetricsOptions,
} from './training-metrics.js';

/** Options of {@link MetricsServer}; every field is optional. */
export interface MetricsServerOptions extends TrainingMetricsOptions {
  /** Interface to listen on (`--metrics-host`); `0.0.0.0` to let a Prometheus on another host scrape. */
  host?: string;
  /** TCP port (`--metrics-port`), integer 0..65535; 0 = an ephemeral port chosen by the OS (tests). */
  port?: number;
  /** How long {@link MetricsServer.close} waits for open scrapes before cutting connections, ms ≥ 0. */
  closeTimeoutMs?: number;
}

/** {@link MetricsServerOptions} with every field set. */
export type ResolvedMetricsServerOptions = Readonly<Required<MetricsServerOptions>>;

/**
 * Default metrics port. 9464 is the port the OpenTelemetry Prometheus exporter registered in Prometheus's
 * default-port list, i.e. a well-known "application metrics" port that scrape configs and firewalls expect;
 * a host running both the trainer and such an exporter sets `--metrics-port`.
 */
export const DEFAULT_METRICS_PORT = 9464;

/** Defaults of {@link MetricsServerOptions}: loopback only, port {@link DEFAULT_METRICS_PORT}. */
export const DEFAULT_METRICS_SERVER: ResolvedMetricsServerOptions = Object.freeze({
  ...DEFAULT_TRAINING_METRICS,
  host: '127.0.0.1',
  port: DEFAULT_METRICS_PORT,
  closeTimeoutMs: 2000,
});

/**
 * Parses the text of `--metrics-port`.
 * @returns the port, integer 0..65535
 * @throws TrainerError `ERR_BAD_FLAG` "--metrics-port must be an integer in 0..65535, got abc"
 */
export function parseMetricsPort(text: string): number {
  const port = /^\d+$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;
  if (!Number.isInteger(port) || port > 65535) {
    throw new TrainerError('ERR_BAD_FLAG', `--metrics-port must be an integer in 0..65535, got ${shownValue(text)}`);
  }
  return port;
}

/**
 * Fills in defaults and validates.
 * @throws TrainerError `ERR_BAD_FLAG` naming the flag and the rule
 */
export function resolveMetricsServerOptions(options: MetricsServerOptions = {}): ResolvedMetricsServerOptions {
  const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  const resolved: ResolvedMetricsServerOptions = Object.freeze({ ...DEFAULT_METRICS_SERVER, ...defined });
  if (!Number.isInteger(resolved.port) || resolved.port < 0 || resolved.port > 65535) {
    throw new TrainerError('ERR_BAD_FLAG', `--metrics-port must be an integer in 0..65535, got ${resolved.port}`);
  }
  if (typeof resolved.host !== 'string' || resolved.host.trim() === '') {
    throw new TrainerError('ERR_BAD_FLAG', `--metrics-host must be a non-empty host name or address, got ${JSON.stringify(resolved.host)}`);
  }
  if (!(resolved.closeTimeoutMs >= 0)) {
    throw new TrainerError('ERR_BAD_FLAG', `closeTimeoutMs must be a number ≥ 0, got ${resolved.closeTimeoutMs}`);
  }
  return resolved;
}

/**
 * Serves the trainer's metrics on `http://host:port/metrics` and exposes the recording API of
 * {@link TrainingMetrics} (`recordStep`, `setWorkerState`, `recordWorkerReport`, …).
 *
 * @example
 * const metrics = new MetricsServer({ port: 0, runId: 'pets-1' });
 * await metrics.start(); // metrics.url → http://127.0.0.1:40123/metrics
 * metrics.recordStep({ step: 1, globalStep: 1, epoch: 0, trainLoss: 3.6, lrs: [1e-3], moms: [0.95], durationSeconds: 0.8 });
 * await metrics.close();
 */
export class MetricsServer extends TrainingMetrics {
  /** Resolved server options (the recording options are in `options`). */
  readonly serverOptions: ResolvedMetricsServerOptions;
  private server?: http.Server;
  private starting?: Promise<void>;
  private closing?: Promise<void>;

  /** @throws TrainerError `ERR_BAD_FLAG` on an invalid option */
  constructor(options: MetricsServerOptions = {}) {
    const resolved = resolveMetricsServerOptions(options);
    super({ runId: resolved.runId, defaultMetrics: resolved.defaultMetrics, nowMs: resolved.nowMs });
    this.serverOptions = resolved;
  }

  /** The bound port (the real one when `port` was 0). @throws TrainerError `ERR_INTERNAL` before start() */
  get port(): number {
    const address = this.server?.address();
    if (!this.server?.listening || address === null || typeof address !== 'object') {
      throw new TrainerError('ERR_INTERNAL', 'metrics server is not listening: call start() first');
    }
    return (address as AddressInfo).port;
  }

  /** Scrape URL, e.g. `http://127.0.0.1:9464/metrics`. @throws TrainerError `ERR_INTERNAL` before start() */
  get url(): string {
    const host = this.serverOptions.host.includes(':') ? `[${this.serverOptions.host}]` : this.serverOptions.host;
    return `http://${host}:${this.port}/metrics`;
  }

  /**
   * Starts listening; idempotent (later calls return the first call's promise).
   * @throws TrainerError `ERR_PORT_IN_USE` when the port is taken, `ERR_BAD_FLAG` when the address is unusable
   *   (not local, no permission), both naming the flags
   */
  start(): Promise<void> {
    if (this.closing) return Promise.reject(new TrainerError('ERR_INTERNAL', 'metrics server was closed; create a new one'));
    this.starting ??= this.listen();
    return this.starting;
  }

  /**
   * Stops listening; idempotent. Waits up to `closeTimeoutMs` for open scrapes, then cuts the connections.
   */
  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private listen(): Promise<void> {
    const { host, port } = this.serverOptions;
    const server = http.createServer((req, res) => void this.handle(req, res));
    server.keepAliveTimeout = 1000;
    return new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        const where = `--metrics-host ${host} --metrics-port ${port}`;
        if (err.code === 'EADDRINUSE') {
          reject(new TrainerError('ERR_PORT_IN_USE', `${where}: port ${port} is already in use (another run or exporter?); pick a free port or 0 for an ephemeral one`, { cause: err }));
        } else {
          reject(new TrainerError('ERR_BAD_FLAG', `${where}: cannot listen (${err.code ?? err.message})`, { cause: err }));
        }
      });
      server.listen(port, host, () => {
        this.server = server;
        resolve();
      });
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
    } else if (path === '/metrics') {
      try {
        const body = await this.scrape();
        res.writeHead(200, { 'content-type': this.registry.contentType }).end(req.method === 'HEAD' ? undefined : body);
      } catch (err) {
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics collection failed: ${String(err)}\n`);
      }
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; metrics are at /metrics\n');
    }
  }

  private async shutDown(): Promise<void> {
    await this.starting?.catch(() => undefined);
    const server = this.server;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        server.closeAllConnections();
        resolve();
      }, this.serverOptions.closeTimeoutMs);
    });
    await Promise.race([closed, timedOut]);
    clearTimeout(timer);
    await closed;
  }
}
