import { z } from 'zod';
import { ChatCompletionBody, ChatCompletionResponse, ModelList } from './schemas/chat.js';
import { ClusterStatusSchema } from './schemas/cluster.js';
import { ErrorBody, HorizonSchema } from './schemas/common.js';
import { AnswerSchema, ArchiveSchema, ChunkEvidence, Evidence, GapEvidence, QuestionBody, Skipped, Timing } from './schemas/questions.js';
import { CreateStreamBody, Retention, StreamList, StreamStatusSchema, UploadForm } from './schemas/streams.js';
import { SummaryBody, SummaryEntrySchema, SummaryEventSchema, SummaryEvidence, SummaryPlanSchema, SummarySchema } from './schemas/summaries.js';
import { TimelineAlertSchema, TimelineSchema, TimelineSpanSchema } from './schemas/timeline.js';
import { ALERT_LIMIT, AlertEvidence, AlertList, AlertSchema, CreateHealthWatchBody, CreateWatchBody, HealthWatchSchema, HealthWatchStatsSchema, NotificationsSchema, WatchList, WatchSchema, WatchStatsSchema, WebhookStatusSchema } from './schemas/watches.js';

const ref = (id: string) => ({ $ref: `#/components/schemas/${id}` });
const json = (id: string) => ({ 'application/json': { schema: ref(id) } });
/** Either of two schemas (a question watch or a health watch). */
const jsonOneOf = (...ids: string[]) => ({ 'application/json': { schema: { oneOf: ids.map(ref) } } });
const RETRY_AFTER = { 'Retry-After': { description: 'Seconds to wait before trying again.', schema: { type: 'integer' } } };
const errors = (...statuses: number[]) =>
  Object.fromEntries(
    statuses.map((s) => [String(s), { description: ERROR_TEXT[s] ?? 'error', content: json('Error'), ...(s === 429 || s === 503 ? { headers: RETRY_AFTER } : {}) }]),
  );
const ERROR_TEXT: Record<number, string> = {
  400: 'invalid input',
  401: 'missing or invalid bearer token',
  403: 'source refused by the URL or file policy',
  404: 'no such stream (or thumbnail)',
  409: 'the stream exists, or is unavailable',
  413: 'body or upload too large',
  415: 'unsupported content type',
  429: 'a question queue is full, or (creating or starting a stream) the server already ingests its most streams at once: retry after the Retry-After header',
  503: 'starting or stopping',
};
const watchIdParam = { name: 'watchId', in: 'path', required: true, schema: { type: 'string' }, description: 'Watch id' };
const streamQuery = { name: 'stream', in: 'query', schema: { type: 'string' }, description: "Only this stream's alerts (404 when unknown)." };
const notCluster = { 404: { description: 'this server is not part of a cluster (vigil serve --cluster)', content: json('Error') } };
const idParam = { name: 'id', in: 'path', required: true, schema: { type: 'string' }, description: 'Stream id' };

/**
 * The OpenAPI 3.0 document, generated from the same zod schemas that validate requests (so the docs
 * cannot drift from the checks). Served at `/openapi.json`.
 */
export function buildOpenApi(version: string): object {
  const registry = z.registry<{ id: string }>();
  const named = { Error: ErrorBody, CreateStream: CreateStreamBody, UploadStream: UploadForm, Retention, StreamStatus: StreamStatusSchema, StreamList, Question: QuestionBody, Evidence, ChunkEvidence, GapEvidence, Skipped, Timing, Horizon: HorizonSchema, Archive: ArchiveSchema, Answer: AnswerSchema, ChatCompletionRequest: ChatCompletionBody, ChatCompletion: ChatCompletionResponse, ModelList, CreateWatch: CreateWatchBody, CreateHealthWatch: CreateHealthWatchBody, Watch: WatchSchema, HealthWatch: HealthWatchSchema, WatchStats: WatchStatsSchema, HealthWatchStats: HealthWatchStatsSchema, WatchList, Alert: AlertSchema, AlertEvidence, AlertList, Notifications: NotificationsSchema, WebhookStatus: WebhookStatusSchema, Timeline: TimelineSchema, TimelineSpan: TimelineSpanSchema, TimelineAlert: TimelineAlertSchema, ClusterStatus: ClusterStatusSchema };
  for (const [id, schema] of Object.entries(named)) registry.add(schema as z.ZodType, { id });
  const summaries = { SummaryRequest: SummaryBody, Summary: SummarySchema, SummaryEntry: SummaryEntrySchema, SummaryEvent: SummaryEventSchema, SummaryEvidence, SummaryPlan: SummaryPlanSchema };
  for (const [id, schema] of Object.entries(summaries)) registry.add(schema as z.ZodType, { id });
  const { schemas } = z.toJSONSchema(registry, { target: 'openapi-3.0', io: 'input', uri: (id) => `#/components/schemas/${id}`, unrepresentable: 'any' });
  for (const schema of Object.values(schemas)) delete (schema as { $id?: string }).$id;

  const secured = { security: [{ bearer: [] }] };
  return {
    openapi: '3.0.3',
    info: { title: 'Vigil', version, description: 'Streaming video QA: add camera streams or videos, ask questions about anything they showed, with evidence frames.' },
    components: { schemas, securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    paths: {
      '/v1/streams': {
        post: {
          ...secured,
          summary: 'Add a stream: a URL or server-side file (JSON), or an uploaded video (multipart)',
          requestBody: { required: true, content: { ...json('CreateStream'), 'multipart/form-data': { schema: ref('UploadStream') } } },
          responses: { 201: { description: 'created', content: json('StreamStatus') }, ...errors(400, 401, 403, 409, 413, 415, 429) },
        },
        get: { ...secured, summary: 'List streams', responses: { 200: { description: 'streams', content: json('StreamList') }, ...errors(401) } },
      },
      '/v1/streams/{id}': {
        parameters: [idParam],
        get: { ...secured, summary: 'Stream status', responses: { 200: { description: 'status', content: json('StreamStatus') }, ...errors(401, 404) } },
        delete: {
          ...secured,
          summary: 'Remove a stream (purge=true also deletes its memory)',
          parameters: [{ name: 'purge', in: 'query', schema: { type: 'boolean' } }],
          responses: { 204: { description: 'removed' }, ...errors(400, 401, 404) },
        },
      },
      '/v1/streams/{id}/stop': { parameters: [idParam], post: { ...secured, summary: 'Stop ingest (memory stays answerable)', responses: { 200: { description: 'status', content: json('StreamStatus') }, ...errors(401, 404) } } },
      '/v1/streams/{id}/start': { parameters: [idParam], post: { ...secured, summary: 'Restart a stopped ingest', responses: { 200: { description: 'status', content: json('StreamStatus') }, ...errors(401, 404, 409, 429) } } },
      '/v1/streams/{id}/questions': {
        parameters: [idParam],
        post: {
          ...secured,
          summary: 'Ask a question (JSON answer, or SSE with stream=true: token events, then an evidence event)',
          requestBody: { required: true, content: json('Question') },
          responses: {
            200: { description: 'the answer', content: { ...json('Answer'), 'text/event-stream': { schema: { type: 'string' } } } },
            ...errors(400, 401, 404, 409, 429),
          },
        },
      },
      '/v1/streams/{id}/summaries': {
        parameters: [idParam],
        post: {
          ...secured,
          summary: 'Summarize a time range: its events (cut at scene changes and outages), each described by the model with evidence (JSON, or SSE with Accept: text/event-stream: plan, event and gap events, then summary)',
          requestBody: { required: true, content: json('SummaryRequest') },
          responses: {
            200: { description: 'the summary (events empty, with a note, when memory holds none of the range)', content: { ...json('Summary'), 'text/event-stream': { schema: { type: 'string' } } } },
            ...errors(400, 401, 404, 409, 429),
          },
        },
      },
      '/v1/streams/{id}/frames/{chunk}.jpg': {
        parameters: [idParam, { name: 'chunk', in: 'path', required: true, schema: { type: 'string' }, description: 'Chunk id, or "latest"' }],
        get: { ...secured, summary: 'Evidence thumbnail (JPEG)', responses: { 200: { description: 'JPEG', content: { 'image/jpeg': { schema: { type: 'string', format: 'binary' } } } }, ...errors(400, 401, 404) } },
      },
      '/v1/streams/{id}/timeline': {
        parameters: [idParam],
        get: {
          ...secured,
          summary: 'The timeline over a range of stream time: scenes (chunk spans, with thumbnails), outages, alerts and memory tiers; bounded (merged spans past 500)',
          parameters: [
            { name: 'from', in: 'query', schema: { type: 'number', minimum: 0 }, description: "Stream seconds; default the memory's oldest frame." },
            { name: 'to', in: 'query', schema: { type: 'number', minimum: 0 }, description: "Stream seconds (>= from); default the memory's newest frame." },
          ],
          responses: { 200: { description: 'the timeline', content: json('Timeline') }, ...errors(400, 401, 404, 409) },
        },
      },
      '/v1/streams/{id}/watches': {
        parameters: [idParam],
        post: {
          ...secured,
          summary: 'Add a watch: a standing question checked as frames arrive; an answer meeting its trigger raises an alert',
          requestBody: { required: true, content: jsonOneOf('CreateWatch', 'CreateHealthWatch') },
          responses: { 201: { description: 'the watch', content: jsonOneOf('Watch', 'HealthWatch') }, ...errors(400, 401, 404, 409, 413) },
        },
        get: { ...secured, summary: "The stream's watches", responses: { 200: { description: 'watches', content: json('WatchList') }, ...errors(401, 404, 409) } },
      },
      '/v1/streams/{id}/watches/{watchId}': {
        parameters: [idParam, watchIdParam],
        get: { ...secured, summary: 'One watch', responses: { 200: { description: 'the watch', content: jsonOneOf('Watch', 'HealthWatch') }, ...errors(401, 404, 409) } },
        delete: { ...secured, summary: 'Remove a watch (its alerts are kept)', responses: { 204: { description: 'removed' }, ...errors(401, 404, 409) } },
      },
      '/v1/alerts': {
        get: {
          ...secured,
          summary: 'Alerts in time order: with since, the oldest limit at or after it; without, the newest limit',
          parameters: [
            streamQuery,
            { name: 'since', in: 'query', schema: { type: 'string' }, description: 'Wall time: ms since the epoch, or an ISO 8601 date-time.' },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: ALERT_LIMIT.max, default: ALERT_LIMIT.default } },
          ],
          responses: { 200: { description: 'alerts', content: json('AlertList') }, ...errors(400, 401, 404, 409) },
        },
      },
      '/v1/alerts/events': {
        get: {
          ...secured,
          summary: 'New alerts as Server-Sent Events: one ready event once subscribed, then an alert event (data: an Alert) for each; a comment line every 15 s',
          parameters: [streamQuery],
          responses: { 200: { description: 'event stream', content: { 'text/event-stream': { schema: { type: 'string' } } } }, ...errors(400, 401, 404) },
        },
      },
      '/v1/notifications': {
        get: {
          ...secured,
          summary: 'Webhook delivery of alerts: outbox queue depth, and per webhook delivered / failed / refused counts and the last success and failure',
          responses: { 200: { description: 'notification status', content: json('Notifications') }, ...errors(401, 503) },
        },
      },
      '/v1/chat/completions': {
        post: {
          ...secured,
          summary: 'OpenAI-compatible chat completion; model = stream id; evidence in the extra field "vigil"',
          requestBody: { required: true, content: json('ChatCompletionRequest') },
          responses: { 200: { description: 'completion (or SSE chunks with stream=true)', content: json('ChatCompletion') }, ...errors(400, 401, 404, 429) },
        },
      },
      '/v1/models': { get: { ...secured, summary: 'Streams as OpenAI models', responses: { 200: { description: 'list', content: json('ModelList') }, ...errors(401) } } },
      '/v1/cluster': {
        get: { ...secured, summary: 'Cluster mode: the nodes (capacity, streams owned, draining) and streams (owner, lease epoch, replication lag, recovery point), as KV has them; 404 when the server is not in a cluster', responses: { 200: { description: 'cluster status', content: json('ClusterStatus') }, ...errors(401, 503), ...notCluster } },
      },
      '/v1/cluster/nodes/{nodeId}/drain': {
        parameters: [{ name: 'nodeId', in: 'path', required: true, schema: { type: 'string' }, description: 'Node id' }],
        post: { ...secured, summary: 'Drain a live node: it hands its streams over to the other nodes and takes no new ones (no body)', responses: { 202: { description: 'drain requested' }, ...errors(400, 401, 503), ...notCluster } },
        delete: { ...secured, summary: 'Undo a drain: the node may take streams again (those it handed over stay where they went)', responses: { 204: { description: 'drain cancelled' }, ...errors(400, 401, 503), ...notCluster } },
      },
      '/healthz': { get: { summary: 'Liveness', responses: { 200: { description: 'alive' } } } },
      '/readyz': { get: { summary: 'Readiness (model and streams loaded)', responses: { 200: { description: 'ready' }, ...errors(503) } } },
      '/metrics': { get: { ...secured, summary: 'Prometheus metrics', responses: { 200: { description: 'text exposition format' }, ...errors(401) } } },
    },
  };
}
