/**
 * The feature extractor: an ONNX Runtime session over a backbone graph whose outputs are the
 * feature layers. This is the file-system/ORT edge of the backbone; everything it needs (graph bytes,
 * identity) is prepared by the registry.
 */
import ort from 'onnxruntime-node';
import { BufferPool } from '../util/buffer-pool.js';
import { BACKBONE_THREAD_CAP, createSession, defaultThreads } from '../onnx/session.js';
import { inspectOnnxGraph } from '../onnx/graph-inspect.js';
import { PartscanError } from '../errors.js';
import type { Tensor4D } from '../types.js';
import type { Backbone, BackboneIdentity } from './types.js';

/** Options of {@link OrtBackbone.create}. */
export interface OrtBackboneOptions {
  /** ORT intra-op threads (default min(available cores, 4)). */
  intraOpNumThreads?: number;
  /** Name of the image input (default: the graph's first input). */
  inputName?: string;
}

/** Default intra-op threads of a backbone session: all cores up to {@link BACKBONE_THREAD_CAP}. */
export function defaultIntraOpThreads(): number {
  return defaultThreads(BACKBONE_THREAD_CAP);
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** A {@link Backbone} running an ONNX graph with onnxruntime-node on the CPU. */
export class OrtBackbone implements Backbone {
  /** What this backbone is. */
  readonly identity: BackboneIdentity;
  /** The ONNX graph the session was created from. */
  readonly onnx: Uint8Array;
  /** Name of the graph's image input. */
  readonly inputName: string;
  private session: ort.InferenceSession | undefined;
  /** Runs in flight, so dispose() can wait for them instead of freeing the session under them. */
  private readonly running = new Set<Promise<unknown>>();
  /** Output dims per input shape, learnt from the first run at that shape. */
  private readonly outputDims = new Map<string, number[][]>();
  /**
   * One pool of output buffers per layer, for {@link OrtBackbone.withFeatures}; two kept per layer:
   * enough for pipelined or concurrent scoring, bounded memory.
   */
  private readonly outputPools: BufferPool[];

  private constructor(session: ort.InferenceSession, onnx: Uint8Array, identity: BackboneIdentity, inputName: string) {
    this.session = session;
    this.onnx = onnx;
    this.identity = identity;
    this.inputName = inputName;
    this.outputPools = identity.layers.map(() => new BufferPool(2));
  }

  /**
   * Inspects the graph (src/onnx/graph-inspect.ts), creates the session and checks that the graph has
   * the input and every output in `identity.layers`. Throws 'ONNX_FORMAT' when the graph is refused or ORT cannot load it,
   * 'ONNX_TENSOR_NOT_FOUND' when a named input/output is absent.
   */
  static async create(onnx: Uint8Array, identity: BackboneIdentity, opts: OrtBackboneOptions = {}): Promise<OrtBackbone> {
    const threads = opts.intraOpNumThreads ?? defaultIntraOpThreads();
    if (!Number.isInteger(threads) || threads < 1) {
      throw new PartscanError('OPTIONS', `intraOpNumThreads must be a positive integer, got ${threads}.`, { remedy: 'pass 1 or more' });
    }
    // The graph may come from a model file or a user's .onnx: inspected before ONNX Runtime loads it.
    inspectOnnxGraph(onnx, { source: `of backbone ${identity.name}` });
    let session: ort.InferenceSession;
    try {
      session = await createSession(onnx, threads);
    } catch (e) {
      throw new PartscanError('ONNX_FORMAT', `ONNX Runtime cannot load the graph of backbone ${identity.name}: ${describe(e)}.`, {
        remedy: 'the ONNX file is corrupt or uses unsupported operators; rebuild it or delete the cached graph',
        cause: e,
      });
    }
    const inputName = opts.inputName ?? session.inputNames[0];
    const fail = async (what: string, available: readonly string[]): Promise<never> => {
      await session.release().catch(() => undefined);
      throw new PartscanError('ONNX_TENSOR_NOT_FOUND', `Backbone ${identity.name} has no ${what}; it has ${available.join(', ') || 'none'}.`, {
        remedy: 'check the input/layer names given for the ONNX backbone',
      });
    };
    if (inputName === undefined || !session.inputNames.includes(inputName)) await fail(`input "${inputName ?? ''}"`, session.inputNames);
    for (const layer of identity.layers) {
      if (!session.outputNames.includes(layer)) await fail(`output "${layer}"`, session.outputNames);
    }
    return new OrtBackbone(session, onnx, identity, inputName!);
  }

  /**
   * Runs the network on an NCHW float32 batch; returns one map per `identity.layers` entry, in that
   * order, with the dims ORT reports. Concurrent calls are safe (ORT sessions allow concurrent runs;
   * onnxruntime-node executes them one after another).
   */
  async extract(input: Tensor4D): Promise<Tensor4D[]> {
    return this.run(input);
  }

  /**
   * Runs the network with its outputs written into pooled buffers and hands the maps to `use`; they
   * are valid only until `use` settles. Fresh output memory per batch (5.6 MB per image for resnet50
   * at 224 px) costs a page fault per 4 KiB on first touch, which on virtual machines can cost more
   * than the copy itself; reused buffers do not. Concurrent calls each take their own buffer set.
   */
  async withFeatures<T>(input: Tensor4D, use: (maps: Tensor4D[]) => T | Promise<T>): Promise<T> {
    const key = input.dims.join('x');
    const dims = this.outputDims.get(key);
    if (!dims) {
      // First run at this shape: learn the output dims (the graph's may be symbolic).
      const maps = await this.run(input);
      this.outputDims.set(key, maps.map((m) => [...m.dims]));
      return use(maps);
    }
    const buffers = dims.map((d, i) => this.outputPools[i]!.acquire(d.reduce((a, b) => a * b, 1)));
    try {
      return await use(await this.run(input, { buffers, dims }));
    } finally {
      buffers.forEach((b, i) => this.outputPools[i]!.release(b));
    }
  }

  /** Runs the session; with `into`, ORT writes the outputs (of the given dims) into those buffers. */
  private async run(input: Tensor4D, into?: { buffers: Float32Array[]; dims: number[][] }): Promise<Tensor4D[]> {
    const session = this.session;
    if (!session) {
      throw new PartscanError('OPTIONS', `Backbone ${this.identity.name} was disposed.`, { remedy: 'create a new backbone before extracting features' });
    }
    const dims = input.dims;
    if (
      dims.length !== 4 ||
      !dims.every((d) => Number.isInteger(d) && d > 0) ||
      dims[1] !== 3 ||
      input.data.length !== dims[0] * dims[1] * dims[2] * dims[3]
    ) {
      throw new PartscanError(
        'INVALID_TENSOR',
        `Backbone input must be [N, 3, H, W] float32 with N·3·H·W values; got dims [${dims.join(', ')}] and ${input.data.length} values.`,
        { remedy: 'pass preprocessed RGB images as an NCHW batch' },
      );
    }
    let outputs: ort.InferenceSession.ReturnType;
    try {
      const feed = new ort.Tensor('float32', input.data, [...dims]);
      const fetches = into
        ? Object.fromEntries(this.identity.layers.map((layer, i) => [layer, new ort.Tensor('float32', into.buffers[i]!, into.dims[i]!)]))
        : this.identity.layers;
      const run = session.run({ [this.inputName]: feed }, fetches);
      this.running.add(run);
      try {
        outputs = await run;
      } finally {
        this.running.delete(run);
      }
    } catch (e) {
      throw new PartscanError(
        'INVALID_TENSOR',
        `ONNX Runtime failed running backbone ${this.identity.name} on input [${dims.join(', ')}]: ${describe(e)}.`,
        { remedy: 'check the image size (at least 32 px for the ResNets) and that the backbone graph is valid', cause: e },
      );
    }
    return this.identity.layers.map((layer, i) => {
      const t = outputs[layer];
      if (!t || t.type !== 'float32' || t.dims.length !== 4) {
        throw new PartscanError(
          'ONNX_FORMAT',
          `Backbone ${this.identity.name} output "${layer}" is ${t ? `${t.type} with dims [${t.dims.join(', ')}]` : 'missing'}; a float32 [N, C, H, W] map is needed.`,
          { remedy: 'choose feature layers that are 4-D convolutional maps' },
        );
      }
      // Channel indices are resolved against the identity's counts: a graph that disagrees would gather the wrong channels.
      if (t.dims[1] !== this.identity.channels[i]) {
        throw new PartscanError('BACKBONE_MISMATCH', `Backbone ${this.identity.name} output "${layer}" has ${t.dims[1]} channels; its identity says ${this.identity.channels[i]}.`, {
          remedy: 'the model header does not describe its backbone graph: re-fit the model',
        });
      }
      return { data: t.data as Float32Array, dims: [t.dims[0]!, t.dims[1]!, t.dims[2]!, t.dims[3]!] as [number, number, number, number] };
    });
  }

  /** Releases the ORT session after runs in flight finish; later {@link OrtBackbone.extract} calls fail. Safe to call twice. */
  async dispose(): Promise<void> {
    const s = this.session;
    this.session = undefined;
    for (const pool of this.outputPools) pool.clear();
    await Promise.allSettled([...this.running]);
    await s?.release();
  }
}
