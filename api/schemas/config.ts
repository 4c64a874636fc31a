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

const EnvName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'the name of an environment variable');

/** An MQTT broker that watches' alerts are published to (a watch's `notify` names it by id, unique among webhooks and brokers). */
export const MqttConfigEntry = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9._:-]{1,64}$/, 'an MQTT broker id is 1-64 letters, digits, ".", "_", "-" or ":"'),
  url: z.string().trim().min(1).max(4096).meta({ description: 'mqtt://host[:1883] or mqtts://host[:8883]; no user:password. Checked at startup against urlPolicy (a refused address is a config error).' }),
  topicPrefix: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}(\/[A-Za-z0-9_.-]{1,64}){0,7}$/, 'topic levels of letters, digits, "_", "-" or "." separated by "/" (no wildcards)')
    .optional()
    .meta({ description: 'First topic level(s): alerts go to <prefix>/<stream>/alerts. Default vigil.' }),
  usernameEnv: EnvName.optional().meta({ description: 'Name of the environment variable holding the user name.' }),
  passwordEnv: EnvName.optional().meta({ description: 'Name of the environment variable holding the password; the password itself is never in the file.' }),
  password: z.never({ error: 'inline secrets are refused: put the password in an environment variable and name it with passwordEnv' }).optional(),
  ca: z.string().min(1).optional().meta({ description: "mqtts: a PEM file (path, relative to the config file) or PEM text of the CA certificate(s) to trust instead of the system's." }),
  qos: z.union([z.literal(0), z.literal(1)]).optional().meta({ description: 'QoS of alert publications: 1 (default) or 0. Availability topics are always QoS 1, retained.' }),
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
  mqtt: z.array(MqttConfigEntry).max(16).optional().meta({ description: 'MQTT brokers for watch alerts and availability (docs/notifications.md).' }),
});

export type ServiceConfig = z.output<typeof ServiceConfigSchema>;
export type CameraConfigEntry = z.output<typeof CameraConfig>;
export type WebhookConfigEntry = z.output<typeof WebhookConfigEntry>;
export type MqttConfigEntry = z.output<typeof MqttConfigEntry>;
