/**
 * Deployment files: every YAML/JSON under deploy/ and grafana/ parses, and holds what its consumer requires
 * (docker compose, Prometheus, Kubernetes, Grafana provisioning, the dashboard JSON model). Docker, Kubernetes
 * and Grafana are not runnable here, so these checks are the guard; `promtool check config` runs when present.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { DEFAULT_METRICS_PORT } from '../../src/coordinator/metrics/server.js';
import { parseTrainArgs } from '../../src/coordinator/options.js';
import { parseWorkerArgs } from '../../src/worker/cli.js';
import { METRICS, type MetricSpec } from '../../src/coordinator/metrics/catalog.js';
import { DASHBOARD_UID, DATASOURCE_UID, renderTrainingDashboard } from '../../src/coordinator/metrics/dashboard.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DEPLOY = path.join(ROOT, 'deploy');

type Doc = Record<string, any>;

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    return statSync(full).isDirectory() ? filesUnder(full) : [full];
  });
}

function loadYaml(rel: string): Doc[] {
  const docs = parseAllDocuments(readFileSync(path.join(ROOT, rel), 'utf8'));
  for (const doc of docs) assert.deepEqual(doc.errors, [], `${rel}: ${doc.errors.join('; ')}`);
  return docs.map((d) => d.toJS() as Doc).filter((d) => d !== null);
}

const compose = (): Doc => loadYaml('deploy/docker-compose.yml')[0];

describe('every deploy/ and grafana/ YAML or JSON parses', () => {
  it('parses', () => {
    const files = [...filesUnder(DEPLOY), ...filesUnder(path.join(ROOT, 'grafana'))].filter((f) => /\.(ya?ml|json)$/.test(f));
    assert.ok(files.length >= 10, `expected ≥ 10 config files, found ${files.length}`);
    for (const file of files) {
      const rel = path.relative(ROOT, file);
      if (file.endsWith('.json')) JSON.parse(readFileSync(file, 'utf8'));
      else assert.ok(loadYaml(rel).length >= 1, `${rel} is empty`);
    }
  });
});

describe('docker compose', () => {
  it('has the GPU and CPU trainers, Prometheus and Grafana, with images, ports and existing mounts', () => {
    const { services, volumes } = compose();
    for (const name of ['trainer-gpu', 'trainer-cpu', 'prometheus', 'grafana']) {
      assert.ok(services[name], `service ${name} missing`);
      assert.equal(typeof services[name].image, 'string', `${name}.image`);
      assert.ok(Array.isArray(services[name].ports) && services[name].ports.length > 0, `${name}.ports`);
    }
    for (const [name, service] of Object.entries<Doc>(services)) {
      for (const mount of service.volumes ?? []) {
        const source = String(mount).split(':')[0];
        if (source.startsWith('.')) assert.ok(existsSync(path.join(DEPLOY, source)), `${name}: mount source ${source} does not exist`);
        else assert.ok(volumes && source in volumes, `${name}: named volume ${source} not declared`);
      }
      if (service.build) assert.ok(existsSync(path.join(DEPLOY, service.build.context, service.build.dockerfile)), `${name}: Dockerfile missing`);
    }
  });

  it('reserves NVIDIA GPUs for the GPU trainer, and both trainers answer as `coordinator` with metrics on 0.0.0.0', () => {
    const { services } = compose();
    const devices = services['trainer-gpu'].deploy.resources.reservations.devices;
    assert.equal(devices[0].driver, 'nvidia');
    assert.ok(devices[0].capabilities.includes('gpu'));
    assert.equal(services['trainer-cpu'].deploy, undefined, 'the CPU variant must not need a GPU');
    for (const name of ['trainer-gpu', 'trainer-cpu']) {
      const service = services[name];
      assert.deepEqual(service.networks.default.aliases, ['coordinator']);
      const command: string[] = service.command.map(String);
      assert.equal(command[command.indexOf('--metrics-port') + 1], String(DEFAULT_METRICS_PORT));
      assert.equal(command[command.indexOf('--metrics-host') + 1], '0.0.0.0');
      assert.ok(service.ports.includes(`${DEFAULT_METRICS_PORT}:${DEFAULT_METRICS_PORT}`));
    }
    const profiles = new Set(Object.values<Doc>(services).flatMap((s) => s.profiles ?? []));
    const env = readFileSync(path.join(DEPLOY, '.env'), 'utf8');
    const chosen = /^COMPOSE_PROFILES=(\S+)$/m.exec(env)?.[1];
    assert.ok(chosen && profiles.has(chosen), `deploy/.env COMPOSE_PROFILES=${chosen} is not a profile of the compose file`);
  });

  it('mounts Grafana provisioning where Grafana reads it and the dashboards where the provider points', () => {
    const grafana = compose().services.grafana;
    const mounts = new Map<string, string>(grafana.volumes.map((v: string) => [v.split(':')[0], v.split(':')[1]]));
    assert.equal(mounts.get('../grafana/provisioning'), '/etc/grafana/provisioning');
    const provider = loadYaml('grafana/provisioning/dashboards/provider.yaml')[0].providers[0];
    assert.equal(mounts.get('../grafana/dashboards'), provider.options.path);
    assert.equal(grafana.environment.PROMETHEUS_URL, 'http://prometheus:9090');
    assert.ok(String(grafana.environment.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH).startsWith(provider.options.path));
  });

  it('builds from node:20, and the GPU target from a CUDA runtime with tfjs-node-gpu\'s install script run', () => {
    const dockerfile = readFileSync(path.join(DEPLOY, 'Dockerfile'), 'utf8');
    assert.match(dockerfile, /^ARG NODE_IMAGE=node:20\b/m);
    assert.match(dockerfile, /^ARG CUDA_IMAGE=nvidia\/cuda:[\d.]+-cudnn\d-runtime/m);
    assert.match(dockerfile, /^FROM \$\{CUDA_IMAGE\} AS gpu$/m);
    assert.match(dockerfile, /^FROM \$\{NODE_IMAGE\} AS cpu$/m);
    assert.match(dockerfile, /npm rebuild @tensorflow\/tfjs-node-gpu/);
    for (const target of ['gpu', 'cpu']) assert.ok(compose().services[`trainer-${target}`].build.target === target);
  });

  it('the cpu image carries the native oneDNN backend and the shm all-reduce, built for any x86-64 CPU; the gpu image the shm all-reduce and Vulkan', () => {
    const dockerfile = readFileSync(path.join(DEPLOY, 'Dockerfile'), 'utf8');
    const stages = Object.fromEntries(dockerfile.split(/^FROM /m).slice(1).map((st) => [st.split('\n')[0]!.split(' AS ')[1]?.trim() ?? '', st]));
    const native = stages.native ?? assert.fail('no native stage');
    assert.match(native, /apt-get install [^\n]*libdnnl-dev/);
    assert.match(native, /build-native\.mjs --strict/, 'the image build fails rather than ship without the addons');
    for (const st of [native, stages.gpu!]) {
      const flags = /PETS_NATIVE_CXXFLAGS="([^"]+)"/.exec(st)?.[1] ?? assert.fail('PETS_NATIVE_CXXFLAGS not set: the default -march=native builds for the build machine only');
      assert.doesNotMatch(flags, /-march=native/);
    }
    assert.match(stages.cpu!, /apt-get install [^\n]*libdnnl2/);
    assert.match(stages.cpu!, /^COPY --from=native \/app\/native\/build \.\/native\/build$/m);
    assert.match(stages.gpu!, /^COPY --from=node-runtime \/usr\/local\/include\/node /m, 'Node headers for the addon build');
    assert.match(stages.gpu!, /test -f native\/build\/pets_shm\.node/);
    assert.match(stages.gpu!, /libvulkan1 libglvnd0/);
    assert.match(stages.gpu!, /NVIDIA_DRIVER_CAPABILITIES=[^\n]*graphics/, 'the toolkit mounts the Vulkan ICD only with graphics');
    const ignored = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8').split('\n');
    for (const p of ['node_modules', 'dist', 'native/build']) assert.ok(ignored.includes(p), `.dockerignore lacks ${p}`);
  });
});

/**
 * Parses a container's command line (`coordinator …` or `worker …`) with the CLI's own parser, after the
 * substitutions the orchestrator makes: compose's `${VAR:-default}` → default, Kubernetes' `$(VAR)` → `vars[VAR]`.
 * @throws what the CLI throws on an unknown or bad flag (commander's error, TrainerError ERR_BAD_FLAG)
 */
function parseCommand(args: readonly unknown[], vars: Readonly<Record<string, string>> = {}): void {
  const argv = args.map((a) => String(a).replace(/\$\{\w+:-([^}]*)\}/g, '$1').replace(/\$\((\w+)\)/g, (_, v: string) => {
    assert.ok(v in vars, `$(${v}) is not set in the test`);
    return vars[v]!;
  }));
  const [program, ...rest] = argv;
  // commander writes its own error to stderr before throwing; the assertion message below says which file.
  if (program === 'coordinator') parseTrainArgs(rest);
  else if (program === 'worker') parseWorkerArgs(rest);
  else assert.fail(`unknown program ${program}`);
}

describe('every command line in deploy/ parses with the real CLI (an unknown flag fails here, not in a pod)', () => {
  it('the compose trainers', () => {
    for (const name of ['trainer-gpu', 'trainer-cpu']) {
      assert.doesNotThrow(() => parseCommand(compose().services[name].command), `docker-compose.yml ${name}.command`);
    }
  });

  it('the Kubernetes coordinator and workers', () => {
    const objects = readdirSync(path.join(DEPLOY, 'k8s')).filter((f) => f.endsWith('.yaml')).flatMap((f) => loadYaml(`deploy/k8s/${f}`));
    const containers = objects.filter((o) => o.kind === 'Deployment' || o.kind === 'StatefulSet').flatMap((o) => o.spec.template.spec.containers);
    assert.deepEqual(containers.map((c: Doc) => c.args[0]).sort(), ['coordinator', 'worker']);
    for (const c of containers) {
      // Every $(VAR) in the args must come from the container's env (Kubernetes leaves an unknown one as it is).
      const env = Object.fromEntries((c.env ?? []).map((e: Doc) => [e.name, e.valueFrom ? '10.1.2.3' : String(e.value)]));
      assert.doesNotThrow(() => parseCommand(c.args, env), `k8s container ${c.name}: ${c.args.join(' ')}`);
    }
  });

  it('a k8s worker binds its data plane on the pod IP, which its neighbours in other pods can reach', () => {
    const [workers] = loadYaml('deploy/k8s/workers.yaml').filter((o) => o.kind === 'StatefulSet');
    const container = workers.spec.template.spec.containers[0];
    const bind = String(container.args[container.args.indexOf('--data-bind') + 1]);
    assert.match(bind, /^tcp:\/\/\$\(POD_IP\):5556$/);
    assert.equal(container.env.find((e: Doc) => e.name === 'POD_IP')?.valueFrom?.fieldRef?.fieldPath, 'status.podIP');
    assert.ok(container.ports.some((p: Doc) => p.containerPort === 5556));
  });

  it('the image\'s user can write /runs and the dataset cache; the k8s coordinator\'s PVC is writable by that user', () => {
    const dockerfile = readFileSync(path.join(DEPLOY, 'Dockerfile'), 'utf8');
    for (const stage of dockerfile.split(/^FROM /m).filter((s) => /^USER node$/m.test(s))) {
      assert.match(stage, /^RUN mkdir -p \/runs \/app\/\.cache && chown node:node \/runs \/app\/\.cache$/m, stage.slice(0, 60));
    }
    const [deployment] = loadYaml('deploy/k8s/coordinator.yaml').filter((o) => o.kind === 'Deployment');
    assert.equal(deployment.spec.template.spec.securityContext?.fsGroup, 1000);
  });

  it('compose keeps the downloads (dataset and ImageNet weights) in its cache volume: mounted where the image\'s PETS_TRAINER_CACHE_DIR points', () => {
    // Seen: the volume sat at /home/node/.cache while the images download to /app/.cache (PETS_TRAINER_CACHE_DIR):
    // nothing was kept across `docker compose down`/`up`, and the volume, absent from the image, was root's.
    const dockerfile = readFileSync(path.join(DEPLOY, 'Dockerfile'), 'utf8');
    const { services } = compose();
    for (const target of ['gpu', 'cpu']) {
      const stage = dockerfile.split(/^FROM /m).find((st) => st.split('\n')[0]!.endsWith(` AS ${target}`)) ?? assert.fail(`no ${target} stage`);
      const cacheDir = /^ENV PETS_TRAINER_CACHE_DIR=(\S+)$/m.exec(stage)?.[1] ?? assert.fail(`${target}: no PETS_TRAINER_CACHE_DIR`);
      assert.doesNotMatch(stage, /PETS_TRAINER_WEIGHTS_DIR/, 'the weights follow PETS_TRAINER_CACHE_DIR (its weights/)');
      const mounts: string[] = services[`trainer-${target}`].volumes.map(String);
      assert.ok(mounts.includes(`cache:${cacheDir}`), `trainer-${target} mounts ${mounts.join(', ')}; the cache is ${cacheDir}`);
    }
  });
});

describe('Prometheus config', () => {
  it('scrapes the coordinator\'s /metrics', () => {
    const config = loadYaml('deploy/prometheus.yml')[0];
    const job = config.scrape_configs.find((c: Doc) => c.job_name === 'pets-trainer');
    assert.ok(job, 'job pets-trainer missing');
    assert.equal(job.metrics_path, '/metrics');
    assert.deepEqual(job.static_configs[0].targets, [`coordinator:${DEFAULT_METRICS_PORT}`]);
    assert.match(config.global.scrape_interval, /^\d+s$/);
  });

  it('passes promtool check config (when promtool is installed)', (t) => {
    try {
      execFileSync('promtool', ['--version'], { stdio: 'ignore' });
    } catch {
      t.skip('promtool not installed (apt-get install -y prometheus)');
      return;
    }
    const out = execFileSync('promtool', ['check', 'config', path.join(DEPLOY, 'prometheus.yml')], { encoding: 'utf8' });
    assert.match(out, /SUCCESS/);
  });
});

describe('Kubernetes manifests', () => {
  const k8sFiles = readdirSync(path.join(DEPLOY, 'k8s')).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
  const objects = k8sFiles.flatMap((f) => loadYaml(`deploy/k8s/${f}`));
  const byKind = (kind: string): Doc[] => objects.filter((o) => o.kind === kind);

  it('every object has apiVersion, kind, metadata.name and spec; kustomization lists every file', () => {
    assert.ok(objects.length >= 6, `expected ≥ 6 objects, got ${objects.length}`);
    for (const o of objects) {
      assert.ok(o.apiVersion && o.kind && o.metadata?.name && o.spec, `incomplete object ${JSON.stringify(o).slice(0, 80)}`);
    }
    const kustomization = loadYaml('deploy/k8s/kustomization.yaml')[0];
    assert.deepEqual([...kustomization.resources].sort(), [...k8sFiles].sort());
  });

  it('workers request one NVIDIA GPU each and connect to the coordinator Service\'s control port', () => {
    const [workers] = byKind('StatefulSet');
    assert.equal(workers.apiVersion, 'apps/v1');
    const container = workers.spec.template.spec.containers[0];
    assert.equal(container.resources.limits['nvidia.com/gpu'], 1);
    assert.equal(container.resources.requests['nvidia.com/gpu'], 1);
    const url = container.args[container.args.indexOf('--connect') + 1];
    const match = /^tcp:\/\/([a-z0-9-]+):(\d+)$/.exec(url);
    assert.ok(match, `--connect ${url}`);
    const service = byKind('Service').find((s) => s.metadata.name === match[1]);
    assert.ok(service, `no Service named ${match[1]}`);
    assert.ok(service.spec.ports.some((p: Doc) => p.port === Number(match[2])), `Service ${match[1]} lacks port ${match[2]}`);
    assert.ok(byKind('Service').some((s) => s.metadata.name === workers.spec.serviceName && s.spec.clusterIP === 'None'));
  });

  it('the coordinator mounts the PVC, exposes metrics with scrape annotations, and the ServiceMonitor matches', () => {
    const [deployment] = byKind('Deployment');
    const pod = deployment.spec.template;
    assert.deepEqual(deployment.spec.selector.matchLabels, pod.metadata.labels);
    const claim = pod.spec.volumes.find((v: Doc) => v.persistentVolumeClaim).persistentVolumeClaim.claimName;
    assert.ok(byKind('PersistentVolumeClaim').some((p) => p.metadata.name === claim), `PVC ${claim} missing`);
    const metricsPort = pod.spec.containers[0].ports.find((p: Doc) => p.name === 'metrics').containerPort;
    assert.equal(metricsPort, DEFAULT_METRICS_PORT);
    assert.equal(pod.metadata.annotations['prometheus.io/scrape'], 'true');
    assert.equal(pod.metadata.annotations['prometheus.io/port'], String(metricsPort));
    const [monitor] = byKind('ServiceMonitor');
    assert.equal(monitor.apiVersion, 'monitoring.coreos.com/v1');
    const target = byKind('Service').find((s) => Object.entries(monitor.spec.selector.matchLabels).every(([k, v]) => s.metadata.labels?.[k] === v));
    assert.ok(target, 'ServiceMonitor selects no Service');
    assert.ok(target.spec.ports.some((p: Doc) => p.name === monitor.spec.endpoints[0].port));
  });
});

describe('Grafana provisioning and dashboard', () => {
  const dashboardPath = path.join(ROOT, 'grafana/dashboards/training.json');
  const dashboard = JSON.parse(readFileSync(dashboardPath, 'utf8'));

  it('provisions a prometheus datasource with the fixed uid and a file dashboard provider', () => {
    const ds = loadYaml('grafana/provisioning/datasources/prometheus.yaml')[0];
    assert.equal(ds.apiVersion, 1);
    assert.equal(ds.datasources[0].type, 'prometheus');
    assert.equal(ds.datasources[0].uid, DATASOURCE_UID);
    const dashboards = loadYaml('grafana/provisioning/dashboards/provider.yaml')[0];
    assert.equal(dashboards.apiVersion, 1);
    assert.equal(dashboards.providers[0].type, 'file');
    assert.ok(dashboards.providers[0].options.path.startsWith('/'));
  });

  it('is in sync with its generator (scripts/gen-dashboard.ts)', () => {
    assert.equal(readFileSync(dashboardPath, 'utf8'), renderTrainingDashboard(), 'run: node --import tsx scripts/gen-dashboard.ts');
  });

  it('shows each plain metric query in the metric\'s own unit (per-query overrides where a panel mixes units)', () => {
    // The unit a reader sees for a query: its override by refId, else the panel's. A query that is a metric
    // selector, bare or summed, must show the catalogue unit of that metric: before the fix the replica panel
    // showed its mismatch count as a percentage (3 → "300%") and the checkpoint panel its mean write time bare.
    const grafanaUnits: Record<MetricSpec['unit'], readonly string[]> = {
      seconds: ['s'], timestamp_seconds: ['dateTimeAsIso', 'dateTimeFromNow'], bytes: ['bytes'], bytes_per_second: ['Bps'],
      images_per_second: ['short'], ratio: ['percentunit'], count: ['short', 'none'], dimensionless: ['none', 'short'],
    };
    const specs = new Map<string, MetricSpec>((Object.values(METRICS) as MetricSpec[]).map((m) => [m.name, m]));
    let checked = 0;
    for (const panel of dashboard.panels.filter((p: Doc) => p.type !== 'row')) {
      for (const target of panel.targets) {
        const override = panel.fieldConfig.overrides.find((o: Doc) => o.matcher.id === 'byFrameRefID' && o.matcher.options === target.refId);
        const unit = override?.properties.find((p: Doc) => p.id === 'unit')?.value ?? panel.fieldConfig.defaults.unit;
        const plain = /^(?:sum(?: by \([a-z, ]+\))? \()?(pets_[a-z0-9_]+)\{[^}]*\}\)?$/.exec(target.expr);
        const spec = plain ? specs.get(plain[1]!) : undefined;
        if (!spec) continue;
        checked++;
        assert.ok(grafanaUnits[spec.unit].includes(unit), `${panel.title}/${target.refId} (${spec.name}, ${spec.unit}) is shown as ${unit}`);
      }
    }
    assert.ok(checked >= 20, `only ${checked} plain queries found`);
    const mean = dashboard.panels.find((p: Doc) => p.title === 'Checkpoints');
    assert.deepEqual(mean.fieldConfig.overrides, [{ matcher: { id: 'byFrameRefID', options: 'B' }, properties: [{ id: 'unit', value: 's' }] }]);
  });

  it('has uid, title, schemaVersion ≥ 39, templating (datasource, run, worker) and well-formed panels', () => {
    assert.equal(dashboard.uid, DASHBOARD_UID);
    assert.ok(dashboard.title.length > 0);
    assert.ok(dashboard.schemaVersion >= 39);
    const vars = new Map<string, Doc>(dashboard.templating.list.map((v: Doc) => [v.name, v]));
    assert.equal(vars.get('datasource')?.type, 'datasource');
    assert.equal(vars.get('datasource')?.query, 'prometheus');
    assert.equal(vars.get('datasource')?.current.value, DATASOURCE_UID);
    for (const name of ['run', 'worker']) assert.equal(vars.get(name)?.datasource.uid, '${datasource}');
    const ids = dashboard.panels.map((p: Doc) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids must be unique');
    const rows = dashboard.panels.filter((p: Doc) => p.type === 'row').map((p: Doc) => p.title);
    assert.deepEqual(rows, ['Training progress', 'Throughput', 'Communication', 'Cluster health', 'Data', 'Process resources']);
    for (const panel of dashboard.panels.filter((p: Doc) => p.type !== 'row')) {
      assert.equal(panel.datasource.uid, '${datasource}', `${panel.title}: datasource`);
      assert.ok(panel.targets.length > 0, `${panel.title}: no targets`);
      for (const target of panel.targets) assert.equal(target.datasource.uid, '${datasource}', `${panel.title}/${target.refId}`);
      const { x, w, h } = panel.gridPos;
      assert.ok(x >= 0 && w > 0 && h > 0 && x + w <= 24, `${panel.title}: gridPos out of the 24-column grid`);
    }
  });
});
