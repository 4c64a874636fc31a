import { z } from 'zod';
import { StreamId } from './common.js';
import { streamSettingsShape } from './streams.js';

/** A camera in the config file: the same fields as `POST /v1/streams`, with the id required. */
export const CameraConfig = z.strictObject({
  ...streamSettingsShape,
  id: StreamId,
  source: z.string().trim().min(1).max(4096).meta({ description: 'May use ${VAR} placeholders (expanded from the environment when the stream starts; never stored expanded).' }),
});

const Cidr = z.string().min(1).max(64);

/** A webhook that watches' alerts may be delivered to (a watch's `notify` names it by id). */
export const WebhookConfigEntry = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9._:-]{1,64}$/, 'a webhook id is 1-64 letters, digits, ".", "_", "-" or ":"'),
  url: z.string().trim().min(1).max(4096).meta({ description: 'http(s) URL of the receiver; no user:password. Checked at startup against urlPolicy (a refused address is a config error).' }),
  secretEnv: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'the name of an environment variable')
    .meta({ description: 'Name of the environment variable holding the HMAC secret (at least 16 characters); the secret itself is never in the file.' }),
  ca: z.string().min(1).optional().meta({ description: 'https: a PEM file (path, relative to the config file) or PEM text of the CA certificate(s) to trust instead of the system\'s.' }),
  timeoutMs: z.int().min(100).max(600_000).optional().meta({ description: 'Per-attempt limit, ms. Default 10 s.' }),
});

/** `vigil serve --config vigil.yaml`. Every string may use ${VAR} placeholders for environment variables. */
export const ServiceConfigSchema = z.strictObject({
  model: z.string().min(1).optional().meta({ description: 'Model folder or probe model name. Default probe-needle.' }),
  queryTaps: z
    .enum(['auto', 'off'])
    .optional()
    .meta({ description: "Query taps for retrieval: auto (default) exposes each decoder layer's pre-RoPE query (falling back to the question's keys when that fails); off always uses the keys." }),
  data: z.string().min(1).optional().meta({ description: 'Data folder. Default $VIGIL_DATA_DIR or ~/.local/share/vigil.' }),
  host: z.string().min(1).optional(),
  port: z.int().min(0).max(65535).optional(),
  auth: z
    .strictObject({
      tokens: z.array(z.string().min(16, 'API tokens must have at least 16 characters')).optional(),
      disabled: z.boolean().optional().meta({ description: 'No authentication at all: local use only.' }),
    })
    .optional(),
  urlPolicy: z
    .strictObject({
      allowedSchemes: z.array(z.enum(['rtsp', 'rtsps', 'http', 'https'])).min(1).optional(),
      allowPrivateNetworks: z.boolean().optional(),
      allowNetworks: z.array(Cidr).optional().meta({ description: 'CIDR ranges exempt from the private-network rule.' }),
      allowFilesDir: z.string().min(1).optional().meta({ description: 'Server-side video files may be read from this folder.' }),
    })
    .optional(),
  limits: z
    .strictObject({
      maxUploadBytes: z.int().min(1).optional(),
      maxBodyBytes: z.int().min(1024).optional(),
      maxStreams: z.int().min(1).optional(),
      questionsPerStream: z.int().min(1).optional(),
      questionsTotal: z.int().min(1).optional(),
    })
    .optional(),
  defaults: z
    .strictObject({
      fps: streamSettingsShape.fps,
      window: streamSettingsShape.window,
      sinks: streamSettingsShape.sinks,
      storage: streamSettingsShape.storage,
      gate: streamSettingsShape.gate,
      budget: streamSettingsShape.budget,
      tiers: streamSettingsShape.tiers,
    })
    .optional(),
  diskBudget: streamSettingsShape.budget.meta({ description: 'Disk budget of the whole data folder (every stream): shared equally among streams. Default: none.' }),
  cameras: z.array(CameraConfig).optional(),
  webhooks: z.array(WebhookConfigEntry).max(64).optional().meta({ description: 'Webhooks for watch alerts (docs/notifications.md).' }),
});

export type ServiceConfig = z.output<typeof ServiceConfigSchema>;
export type CameraConfigEntry = z.output<typeof CameraConfig>;
export type WebhookConfigEntry = z.output<typeof WebhookConfigEntry>;
