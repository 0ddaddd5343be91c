/**
 * Queue benchmark: throughput of `partscan worker` processes on a real redis-server against in-process
 * batched scoring (a BatchingScorer with every image as a concurrent request), and the queue's
 * per-image overhead. Prints one JSON object.
 *
 *   npm run bench:queue -- [--data ../shared/datasets/mvtec_bottle] [--channels 100] [--image-size 224]
 *                          [--fit-images 30] [--repeat 1] [--workers 1,2] [--concurrency 16] [--threads N]
 *                          [--rounds 2]
 *
 * Scored images: the data set's test split, `--repeat` times. Without `--threads`, in-process scoring
 * uses ONNX Runtime's default (all cores) and k workers get cores / k threads each. Exports are off on both sides (the
 * queue's cost is what is measured, not PNG encoding). Workers are started and warmed (model loaded)
 * before the clock starts; the producer's model is loaded beforehand too. Each figure is the best of
 * `--rounds` runs (shared machines are noisy; the rounds of in-process and queue scoring alternate).
 * Redis runs with the append-only file, fsync every second (the production setting). Needs redis-server.
 *
 * Wall time on a shared machine measures the neighbours as much as partscan, so CPU time is reported
 * too: CPU seconds per image in process, and of worker + producer + redis-server for the queue (Linux
 * /proc); its overhead is the queue's cost independent of load.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadDataset } from '../src/data/loaders.js';
import { BatchingScorer } from '../src/model/batching-scorer.js';
import { fit } from '../src/model/fit.js';
import { Model } from '../src/model/model.js';
import { scoreOnQueue } from '../src/queue/producer.js';
import { startRedis } from '../test/helpers/redis.js';

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: path.resolve(process.cwd(), '..', 'shared', 'datasets', 'mvtec_bottle') },
    channels: { type: 'string', default: '100' },
    'image-size': { type: 'string', default: '224' },
    'fit-images': { type: 'string', default: '30' },
    repeat: { type: 'string', default: '1' },
    workers: { type: 'string', default: '1,2' },
    concurrency: { type: 'string', default: '16' },
    threads: { type: 'string' },
    rounds: { type: 'string', default: '2' },
    weights: { type: 'string', default: path.resolve(process.cwd(), '..', 'shared', 'reference', 'resnet50-random-seed0.safetensors') },
  },
});

/** CPU seconds (user + system) a process has used so far, from /proc (Linux); 0 elsewhere. */
async function cpuSeconds(pid: number | undefined): Promise<number> {
  if (pid === undefined) return 0;
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of stat (utime, stime) in clock ticks: 100 per second on Linux.
  return f.length > 13 ? (Number(f[11]) + Number(f[12])) / 100 : 0;
}

const NO_EXPORTS = { overlay: false, heatmap: false, mask: false, original: false };

/** A worker process; without --threads, k workers on one machine share its cores (cores / k threads each). */
function spawnWorker(url: string, queue: string, k: number): { proc: ChildProcess; exited: Promise<unknown> } {
  const threads = values.threads ?? String(Math.max(1, Math.floor(os.cpus().length / k)));
  const args = ['--import', 'tsx', path.resolve('src/cli/main.ts'), 'worker', '--redis', url, '--queue', queue, '--concurrency', values.concurrency!, '--threads', threads];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, PARTSCAN_NO_PROGRESS: '1' } });
  return { proc, exited: new Promise((r) => proc.once('exit', r)) };
}

async function main(): Promise<void> {
  const channels = Number(values.channels);
  const imageSize = Number(values['image-size']);
  const threads = values.threads ? Number(values.threads) : undefined;
  const ds = await loadDataset(values.data!);
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-bench-queue-'));
  const redis = await startRedis({ appendfsync: 'everysec' });
  const rounds = Math.max(1, Number(values.rounds));
  try {
    const train = ds.train.slice(0, Number(values['fit-images']));
    const fitted = await fit(train, { backbone: { backbone: 'resnet50', weights: values.weights! }, channels, imageSize, calibrationSplit: 0.2, contaminationCheck: false });
    const modelFile = path.join(tmp, 'bench.partscan');
    await fitted.save(modelFile, { resumable: false });
    await fitted.dispose();
    const files = Array.from({ length: Number(values.repeat) }, () => ds.test.map((s) => s.path)).flat();

    // In process: every image a concurrent request to one BatchingScorer (batched scoring).
    const model = await Model.load(modelFile, threads !== undefined ? { threads } : {});
    const scorer = new BatchingScorer(model);
    await Promise.all(files.slice(0, scorer.maxBatch).map((f) => scorer.score(f)));
    let localCpu = Infinity;
    const localRound = async () => {
      const c = process.cpuUsage();
      const t = performance.now();
      await Promise.all(files.map((f) => scorer.score(f)));
      const used = process.cpuUsage(c);
      localCpu = Math.min(localCpu, (used.user + used.system) / 1e6);
      return (performance.now() - t) / 1000;
    };
    let localS = Infinity;

    const queue: { workers: number; seconds: number; imagesPerSecond: number; cpuSecondsPerImage: number; producerAndRedisCpuSecondsPerImage: number }[] = [];
    for (const k of values.workers!.split(',').map(Number)) {
      const name = `bench-${k}`;
      const workers = Array.from({ length: k }, () => spawnWorker(redis.url, name, k));
      try {
        // Warm-up: every worker loads the model before the clock starts.
        await scoreOnQueue(modelFile, files.slice(0, 4 * k), path.join(tmp, `warm-${k}`), { redis: redis.url, queue: name, exports: NO_EXPORTS, model });
        let s = Infinity;
        let cpu = Infinity;
        let side = Infinity;
        const pids = () => [...workers.map((w) => w.proc.pid), redis.pid()];
        for (let r = 0; r < rounds; r++) {
          localS = Math.min(localS, await localRound());
          const c0 = process.cpuUsage();
          const before = await Promise.all(pids().map(cpuSeconds));
          const t = performance.now();
          await scoreOnQueue(modelFile, files, path.join(tmp, `run-${k}-${r}`), { redis: redis.url, queue: name, exports: NO_EXPORTS, model });
          s = Math.min(s, (performance.now() - t) / 1000);
          const after = await Promise.all(pids().map(cpuSeconds));
          const producer = process.cpuUsage(c0);
          const producerCpu = (producer.user + producer.system) / 1e6;
          cpu = Math.min(cpu, after.reduce((a, x, i) => a + x - before[i]!, 0) + producerCpu);
          // The last pid is redis-server's.
          side = Math.min(side, after.at(-1)! - before.at(-1)! + producerCpu);
        }
        queue.push({
          workers: k,
          seconds: s,
          imagesPerSecond: files.length / s,
          cpuSecondsPerImage: cpu / files.length,
          producerAndRedisCpuSecondsPerImage: side / files.length,
        });
      } finally {
        for (const w of workers) w.proc.kill('SIGTERM');
        await Promise.all(workers.map((w) => w.exited));
      }
    }
    await model.dispose();
    const one = queue.find((q) => q.workers === 1);
    const out = {
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.cpus().length,
      channels,
      imageSize,
      images: files.length,
      rounds,
      inProcess: { seconds: localS, imagesPerSecond: files.length / localS, cpuSecondsPerImage: localCpu / files.length, maxBatch: scorer.maxBatch },
      queue,
      ...(one
        ? {
            overheadPercent1Worker: ((one.seconds - localS) / localS) * 100,
            overheadMsPerImage: ((one.seconds - localS) * 1000) / files.length,
            cpuOverheadPercent1Worker: ((one.cpuSecondsPerImage * files.length - localCpu) / localCpu) * 100,
          }
        : {}),
    };
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  } finally {
    await redis.stop();
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

await main();
