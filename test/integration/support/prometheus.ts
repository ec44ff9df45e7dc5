/**
 * A real Prometheus for integration tests: started on loopback with a unique port, a temporary storage folder and
 * a generated config that scrapes one given target every second; queried through its HTTP API.
 *
 * The target is any `http://host:port/path` URL, e.g. the `/metrics` of a real `coordinator` run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** How to get the binary where it is missing (Debian ships it; CI can add this line). */
export const PROMETHEUS_INSTALL_HINT =
  'install it with `apt-get install -y prometheus` (Debian/Ubuntu; the service is not needed, only /usr/bin/prometheus), '
  + 'or point PROMETHEUS_BIN at a prometheus binary from https://prometheus.io/download/';

/** Job name of the scraped target in the generated config (`up{job="pets-trainer"}`). */
export const SCRAPE_JOB = 'pets-trainer';

/**
 * Finds the Prometheus server binary: `$PROMETHEUS_BIN`, else `prometheus` on `$PATH`.
 * @returns its path, or undefined when there is none
 */
export function findPrometheusBinary(): string | undefined {
  const candidates = process.env.PROMETHEUS_BIN
    ? [process.env.PROMETHEUS_BIN]
    : (process.env.PATH ?? '').split(path.delimiter).filter(Boolean).map((dir) => path.join(dir, 'prometheus'));
  return candidates.find((file) => {
    try {
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** Asks the OS for a free TCP port on 127.0.0.1 (bind to 0, read it, release it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Options of {@link PrometheusHarness.start}. */
export interface PrometheusHarnessOptions {
  /** What to scrape, e.g. `http://127.0.0.1:40123/metrics`. */
  targetUrl: string;
  /** Scrape interval, whole seconds ≥ 1 (default 1). */
  scrapeIntervalSeconds?: number;
  /** Binary to run (default {@link findPrometheusBinary}). */
  binary?: string;
  /** How long to wait for `/-/ready`, ms (default 20000). */
  startTimeoutMs?: number;
}

/** One series of an instant-query result. */
export interface PromSample {
  readonly metric: Record<string, string>;
  /** `[unix seconds, "value"]` as the API returns it. */
  readonly value: [number, string];
}

/** One series of a range-query result. */
export interface PromSeries {
  readonly metric: Record<string, string>;
  /** `[unix seconds, "value"]` pairs, one per evaluation step where the series has a value. */
  readonly values: [number, string][];
}

/** The config Prometheus runs with: one job, one target. */
export function scrapeConfigYaml(targetUrl: string, intervalSeconds: number): string {
  const url = new URL(targetUrl);
  return [
    'global:',
    `  scrape_interval: ${intervalSeconds}s`,
    `  scrape_timeout: ${intervalSeconds}s`,
    'scrape_configs:',
    `  - job_name: ${SCRAPE_JOB}`,
    `    scheme: ${url.protocol.replace(':', '')}`,
    `    metrics_path: ${JSON.stringify(url.pathname)}`,
    '    static_configs:',
    `      - targets: [${JSON.stringify(url.host)}]`,
    '',
  ].join('\n');
}

/** A running Prometheus; {@link close} stops it and deletes its storage. */
export class PrometheusHarness {
  private log = '';
  private exited = false;

  private constructor(
    /** `http://127.0.0.1:<port>` of the Prometheus web API. */
    readonly baseUrl: string,
    private readonly child: ChildProcess,
    private readonly dir: string,
  ) {
    const keep = (chunk: Buffer): void => {
      this.log = (this.log + chunk.toString()).slice(-20_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    child.once('exit', () => {
      this.exited = true;
    });
  }

  /**
   * Writes the config, starts Prometheus on a free loopback port and waits until it is ready.
   * @throws Error with Prometheus's log tail when it exits or is not ready in time
   */
  static async start(options: PrometheusHarnessOptions): Promise<PrometheusHarness> {
    const binary = options.binary ?? findPrometheusBinary();
    if (!binary) throw new Error(`prometheus binary not found: ${PROMETHEUS_INSTALL_HINT}`);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'pets-prometheus-'));
    const config = path.join(dir, 'prometheus.yml');
    await writeFile(config, scrapeConfigYaml(options.targetUrl, options.scrapeIntervalSeconds ?? 1));
    const port = await freePort();
    const child = spawn(binary, [
      `--config.file=${config}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    const harness = new PrometheusHarness(`http://127.0.0.1:${port}`, child, dir);
    try {
      await harness.waitFor(async () => (await fetch(`${harness.baseUrl}/-/ready`)).ok, options.startTimeoutMs ?? 20_000, 'ready');
    } catch (err) {
      await harness.close();
      throw err;
    }
    return harness;
  }

  /** Prometheus's recent stdout/stderr (for failure messages). */
  get logTail(): string {
    return this.log;
  }

  /**
   * Waits until the target was scraped successfully at least `count` times (`up == 1` samples).
   * @param timeoutMs - give up after this long, ms
   */
  async waitForScrapes(count: number, timeoutMs = 30_000): Promise<void> {
    const expr = `sum_over_time(up{job="${SCRAPE_JOB}"}[5m])`;
    await this.waitFor(async () => {
      const [sample] = await this.query(expr);
      return sample !== undefined && Number(sample.value[1]) >= count;
    }, timeoutMs, `${count} successful scrapes`);
  }

  /**
   * Runs an instant query (`/api/v1/query`) at the current time.
   * @returns the result vector (a scalar result becomes one sample with no labels)
   * @throws Error with Prometheus's error text when the query is rejected
   */
  async query(expr: string): Promise<PromSample[]> {
    const res = await fetch(`${this.baseUrl}/api/v1/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ query: expr }),
    });
    const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: unknown } };
    if (body.status !== 'success' || !body.data) throw new Error(`query rejected: ${expr}: ${body.error ?? res.status}`);
    const { resultType, result } = body.data;
    if (resultType === 'scalar') return [{ metric: {}, value: result as [number, string] }];
    if (resultType !== 'vector') throw new Error(`query ${expr} returned a ${resultType}, expected a vector`);
    return result as PromSample[];
  }

  /**
   * Runs a range query (`/api/v1/query_range`), as a Grafana panel does over its time range.
   * @param startS - range start, unix seconds
   * @param endS - range end, unix seconds
   * @param stepS - evaluation step, seconds > 0
   * @returns the result matrix
   * @throws Error with Prometheus's error text when the query is rejected
   */
  async queryRange(expr: string, startS: number, endS: number, stepS = 1): Promise<PromSeries[]> {
    const res = await fetch(`${this.baseUrl}/api/v1/query_range`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ query: expr, start: String(startS), end: String(endS), step: String(stepS) }),
    });
    const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: unknown } };
    if (body.status !== 'success' || !body.data) throw new Error(`range query rejected: ${expr}: ${body.error ?? res.status}`);
    if (body.data.resultType !== 'matrix') throw new Error(`range query ${expr} returned a ${body.data.resultType}, expected a matrix`);
    return body.data.result as PromSeries[];
  }

  /** Stops Prometheus (SIGTERM, then SIGKILL after 5 s) and deletes its storage; idempotent. */
  async close(): Promise<void> {
    if (!this.exited && this.child.exitCode === null) {
      const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    await rm(this.dir, { recursive: true, force: true });
  }

  private async waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.exited) throw new Error(`prometheus exited before ${what}:\n${this.log}`);
      if (await check().catch(() => false)) return;
      if (Date.now() > deadline) throw new Error(`prometheus: no ${what} after ${timeoutMs} ms:\n${this.log}`);
      await sleep(200);
    }
  }
}

/**
 * Replaces Grafana template variables in a PromQL expression the way Grafana would before sending it:
 * `$__rate_interval`, `$__interval`, `$__range` and `$name` / `${name}` from `vars`.
 * @throws Error when a `$variable` is left that `vars` does not define
 */
export function substituteVariables(expr: string, vars: Readonly<Record<string, string>>): string {
  const out = expr.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, braced: string | undefined, bare: string | undefined) => {
    const name = braced ?? bare ?? '';
    if (!(name in vars)) throw new Error(`template variable ${whole} has no value in ${expr}`);
    return vars[name];
  });
  return out;
}
