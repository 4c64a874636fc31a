import { z } from 'zod';
import { Settings } from '../../common/settings.js';
import { STREAM_STATES } from '../../src/engine/streamManager.js';
import { HorizonSchema, StreamId } from './common.js';

export const Retention = z
  .strictObject({
    maxBytes: Settings.retentionMaxBytes.optional(),
    maxAgeSec: Settings.retentionMaxAgeSec.optional(),
  });

const Storage = Settings.storage;

/** Frame gating: 'off', or either field (the other takes its default). */
export const Gate = z
  .union([
    z.literal('off'),
    z.strictObject({ threshold: Settings.gateThreshold.optional(), maxHoldSec: Settings.gateMaxHoldSec.optional() }),
  ])
  .meta({
    description:
      "Frame gating: a sampled frame whose 64x64 luminance image barely differs from the last encoded frame's is not encoded; the previous chunk's time span is extended over it. 'off' encodes every frame. Default { threshold: 0.005, maxHoldSec: 60 } (or the server's default).",
  });
const GateStatus = z.union([z.literal('off'), z.strictObject({ threshold: z.number(), maxHoldSec: z.number() })]);

/** Fields shared by JSON creation, uploads (as form fields) and config-file cameras. */
export const streamSettingsShape = {
  id: StreamId.optional().meta({ description: 'Stream id; generated when absent. 409 if it exists.' }),
  name: z.string().min(1).max(200).optional().meta({ description: 'Display name; default the id.' }),
  fps: Settings.fps.optional(),
  window: Settings.window.optional(),
  sinks: Settings.sinks.optional(),
  storage: Storage.optional(),
  retention: Retention.optional(),
  gate: Gate.optional(),
  budget: Settings.budget.optional(),
  tiers: Settings.tiers.optional(),
};

export const CreateStreamBody = z
  .strictObject({
    source: z
      .string()
      .trim()
      .min(1)
      .max(4096)
      .meta({ description: 'rtsp://, rtsps://, http(s):// (file or HLS), or a server-side path when the server allows files.', example: 'rtsp://user:pass@camera.example.com/stream' }),
    ...streamSettingsShape,
  });

/** A form field holding JSON (retention, tiers): parsed, or left as the string for the schema to refuse. */
function jsonField(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  try {
    return JSON.parse(v) as unknown;
  } catch {
    return v;
  }
}

/** The same settings as multipart form fields (strings), for uploads. */
const numberField = (schema: z.ZodNumber) => z.preprocess((v) => (typeof v === 'string' && v.trim() !== '' ? Number(v) : v), schema);
export const UploadFields = z.strictObject({
  id: streamSettingsShape.id,
  name: streamSettingsShape.name,
  fps: numberField(Settings.fps).optional(),
  window: numberField(Settings.window).optional(),
  sinks: numberField(Settings.sinks).optional(),
  gate: z
    .preprocess((v) => {
      if (typeof v !== 'string' || v === 'off') return v;
      try {
        return JSON.parse(v) as unknown;
      } catch {
        return v;
      }
    }, Gate)
    .optional(),
  storage: Storage.optional(),
  budget: Settings.budget.optional(),
  retention: z.preprocess(jsonField, Retention).optional(),
  tiers: z.preprocess(jsonField, Settings.tiers).optional(),
});

export const UploadForm = z
  .object({
    file: z.string().meta({ format: 'binary', description: 'The video file (multipart field "file").' }),
    id: z.string().optional(),
    name: z.string().optional(),
    fps: z.number().optional(),
    window: z.int().optional(),
    sinks: z.int().optional(),
    gate: z.string().optional().meta({ description: '"off", or JSON, e.g. {"threshold": 0.01, "maxHoldSec": 30}' }),
    storage: Storage.optional(),
    retention: z.string().optional().meta({ description: 'JSON, e.g. {"maxBytes": 1073741824}' }),
    budget: z.string().optional().meta({ description: 'Disk budget, e.g. "20GB" or "1.5GiB" or bytes. Default 20GB.' }),
    tiers: z.string().optional().meta({ description: 'Memory tiers as JSON, e.g. {"keepFullSec": 600, "kvShare": 0.5, "archive": true}' }),
  });

export const DeleteQuery = z.strictObject({
  purge: z
    .enum(['true', 'false', '1', '0'])
    .optional()
    .transform((v) => v === 'true' || v === '1')
    .meta({ description: 'Also delete the memory (KV, index, thumbnails) from disk.' }),
});

const Gap = z.strictObject({ startT: z.number(), endT: z.number().nullable(), reason: z.string() });
const TimelineGap = z.strictObject({ from: z.number(), to: z.number(), reason: z.string() });

export const StreamStatusSchema = z
  .strictObject({
    id: z.string(),
    name: z.string(),
    source: z.string().meta({ description: 'The source with credentials removed.' }),
    origin: z.enum(['api', 'config']),
    kind: z.enum(['file', 'upload', 'rtsp', 'http', 'hls']),
    live: z.boolean().nullable(),
    state: z.enum(STREAM_STATES).meta({ description: 'paused: the disk is full; ingest resumes by itself when space returns (error DISK_FULL).' }),
    createdAt: z.string(),
    settings: z.strictObject({
      fps: z.number(),
      window: z.int(),
      sinks: z.int(),
      storage: Storage,
      gate: GateStatus,
      retention: Retention,
      budget: z.int().nullable().meta({ description: 'The disk budget asked for, bytes (null: a stream recorded before budgets, which keeps none).' }),
      tiers: z
        .strictObject({ keepFullSec: z.number(), kvShare: z.number(), archive: z.boolean() })
        .meta({ description: 'Memory tiers in force under the budget: the fields asked for (or the server defaults), the others at their defaults.' }),
    }),
    frames: z.int().meta({ description: 'Frames encoded since the ingest (re)started.' }),
    memory: z
      .strictObject({
        chunks: z.int(),
        bytes: z.int(),
        firstT: z.number().nullable(),
        lastT: z.number().nullable(),
        contextFrames: z.int(),
        gaps: z.int().meta({ description: 'Outages persisted in the timeline (camera down, service stopped, disk full); kept across restarts.' }),
        lastGap: TimelineGap.nullable().meta({ description: 'The newest persisted outage (stream time).' }),
        horizon: HorizonSchema,
      })
      .nullable()
      .meta({ description: 'Chunks and bytes on disk, stream-time span, frames in the context window, persisted outages.' }),
    disk: z
      .strictObject({
        budgetBytes: z.int().nullable().meta({ description: 'Budget in force: the stream budget, or its share of the server disk budget when smaller.' }),
        usedBytes: z.int().meta({ description: 'Bytes on disk now (chunk store and index folders, measured).' }),
        percent: z.number().nullable().meta({ description: 'usedBytes as a percentage of budgetBytes.' }),
      })
      .nullable()
      .meta({ description: 'Disk use against the budget; null while the memory is not open.' }),
    ingest: z
      .strictObject({
        fps: z.number(),
        sourceFps: z.number(),
        lagMs: z.number().meta({ description: 'How far ingest is behind the source (ms): the age of the oldest frame the source delivered that is not stored yet, waiting in the queue or for/in the model; 0 when caught up.' }),
        drops: z.int(),
        gaps: z.int(),
        restarts: z.int(),
        queued: z.int(),
        lastGap: Gap.nullable(),
        gapWriteErrors: z.int().meta({ description: 'Outages this ingest could not write to the timeline (retried).' }),
        pauses: z.int().meta({ description: 'Times this ingest paused because the disk was full.' }),
        pausedDrops: z.int().meta({ description: 'Live frames dropped while paused.' }),
        gated: z.int().meta({ description: 'Frames the gate turned away (not encoded; the previous chunk covers them).' }),
      })
      .nullable(),
    progress: z
      .strictObject({ t: z.number(), durationS: z.number().nullable(), fraction: z.number().nullable() })
      .meta({ description: 'Newest stored stream time (s); durationS and fraction only for finite sources (null for live ones).' }),
    questions: z.strictObject({ queued: z.int(), answered: z.int() }),
    latestThumbnail: z.int().nullable(),
    error: z
      .strictObject({ code: z.string(), message: z.string() })
      .nullable()
      .meta({ description: 'Why the stream failed or is unavailable, or why a live source is reconnecting (backing-off); null otherwise.' }),
    owner: z.string().optional().meta({ description: 'Cluster mode only: the node that owns the stream (holds its lease).' }),
    epoch: z.int().optional().meta({ description: "Cluster mode only: the owner's lease epoch (+1 on every new owner)." }),
  });

export const StreamList = z.strictObject({ streams: z.array(StreamStatusSchema) });
