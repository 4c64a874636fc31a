/**
 * A Hugging Face model folder's tokenizer and chat template, behind the small API the rest of
 * Vigil needs. Real models and Vigil's probe models load through the same path.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import { VigilError } from '../../common/errors.js';

export type ChatContent = { type: 'text'; text: string } | { type: 'image' } | { type: 'video' };

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string | ChatContent[];
}

/** The special-token attributes transformers hands to every chat template. */
const TEMPLATE_TOKEN_KEYS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'] as const;

interface ChatTemplateSource {
  text: string;
  /** Where it came from, so template errors can name the file. */
  file: string;
}

type JsonObject = Record<string, unknown>;

export class VlmTokenizer {
  private compiled: Template | undefined;

  private constructor(
    private readonly inner: Tokenizer,
    private readonly config: JsonObject,
    private readonly modelDir: string,
    private readonly template: ChatTemplateSource | undefined,
  ) {}

  static async load(modelDir: string): Promise<VlmTokenizer> {
    await requireFolder(modelDir);
    const tokenizerFile = path.join(modelDir, 'tokenizer.json');
    const configFile = path.join(modelDir, 'tokenizer_config.json');
    const tokenizerJson = await readRequiredJsonObject(tokenizerFile);
    const config = await readRequiredJsonObject(configFile);
    if (typeof tokenizerJson.model !== 'object' || tokenizerJson.model === null) {
      throw new VigilError('CORRUPT_MODEL', `${tokenizerFile} has no "model" section; it is not a Hugging Face tokenizer.json`);
    }
    // tokenizer.json files written by hand or by older tools may omit the optional pipeline
    // stages; the library needs the keys present (null = stage absent).
    const normalizedJson = {
      normalizer: null,
      pre_tokenizer: null,
      post_processor: null,
      decoder: null,
      added_tokens: [],
      ...tokenizerJson,
    };
    // The library defaults this to true, which rewrites " ?" to "?" and breaks round trips;
    // transformers no longer defaults to it either, so only an explicit setting turns it on.
    const libraryConfig = { ...config, clean_up_tokenization_spaces: config.clean_up_tokenization_spaces === true };
    let inner: Tokenizer;
    try {
      inner = new Tokenizer(normalizedJson, libraryConfig);
    } catch (error) {
      throw new VigilError('CORRUPT_MODEL', `cannot build a tokenizer from ${tokenizerFile}: ${errorMessage(error)}`, { cause: error });
    }
    const template = await findChatTemplate(modelDir, config, configFile);
    return new VlmTokenizer(inner, config, modelDir, template);
  }

  /** Ids for `text`. Special tokens written in the text (e.g. `<image>`) map to their ids. */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    // Default false: rendered chat templates already contain every special token they need.
    return this.inner.encode(text, { add_special_tokens: options.addSpecialTokens ?? false }).ids;
  }

  decode(ids: ArrayLike<number>, options: { skipSpecialTokens?: boolean } = {}): string {
    // The library rejects empty input and typed arrays; an empty answer is a normal case.
    if (ids.length === 0) return '';
    return this.inner.decode(Array.from(ids, Number), {
      skip_special_tokens: options.skipSpecialTokens ?? false,
    });
  }

  tokenToId(token: string): number | undefined {
    return this.inner.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.inner.id_to_token(id);
  }

  /** One past the highest id the tokenizer knows (base vocab plus added tokens). */
  get vocabSize(): number {
    return this.inner.model?.vocab.length ?? 0;
  }

  /** Ids of added tokens flagged special (e.g. `<image>`, `<end_of_utterance>`). */
  specialTokenIds(): Set<number> {
    const ids = new Set<number>();
    for (const [id, token] of this.inner.get_added_tokens_decoder()) if (token.special) ids.add(id);
    return ids;
  }

  /**
   * Renders `messages` with the model's chat template, as transformers' apply_chat_template does.
   * Unlike transformers, `addGenerationPrompt` defaults to true: Vigil renders prompts to generate
   * an answer from, and a missing `Assistant:` would silently degrade answers.
   */
  applyChatTemplate(messages: ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): string {
    const template = this.template;
    if (!template) {
      throw new VigilError(
        'BAD_CONFIG',
        `${this.modelDir} has no chat template (looked in chat_template.json, chat_template.jinja, processor_config.json and tokenizer_config.json "chat_template")`,
      );
    }
    if (!this.compiled) {
      try {
        this.compiled = new Template(template.text);
      } catch (error) {
        throw new VigilError('BAD_CONFIG', `cannot parse the chat template in ${template.file}: ${errorMessage(error)}`, { cause: error });
      }
    }
    const context: Record<string, unknown> = {
      messages: messages.map(toTemplateMessage),
      add_generation_prompt: options.addGenerationPrompt ?? true,
    };
    for (const key of TEMPLATE_TOKEN_KEYS) {
      const value = tokenContent(this.config[key]);
      if (value !== undefined) context[key] = value;
    }
    const extra = this.config.additional_special_tokens;
    if (Array.isArray(extra)) context.additional_special_tokens = extra.map(tokenContent).filter((token) => token !== undefined);
    try {
      return this.compiled.render(context);
    } catch (error) {
      throw new VigilError('BAD_CONFIG', `the chat template in ${template.file} failed to render: ${errorMessage(error)}`, { cause: error });
    }
  }
}

/** Fresh plain objects, so a template cannot mutate the caller's messages. */
function toTemplateMessage(message: ChatMessage): Record<string, unknown> {
  return {
    role: message.role,
    content: typeof message.content === 'string' ? message.content : message.content.map((item) => ({ ...item })),
  };
}

/** tokenizer_config stores special tokens either as strings or as AddedToken objects. */
function tokenContent(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && typeof (value as JsonObject).content === 'string') {
    return (value as JsonObject).content as string;
  }
  return undefined;
}

async function requireFolder(modelDir: string): Promise<void> {
  let isDirectory: boolean;
  try {
    isDirectory = (await stat(modelDir)).isDirectory();
  } catch (error) {
    if (isNotFound(error)) throw new VigilError('FILE_NOT_FOUND', `model folder not found: ${modelDir}`, { cause: error });
    throw new VigilError('FILE_NOT_FOUND', `cannot read model folder ${modelDir}: ${errorMessage(error)}`, { cause: error });
  }
  if (!isDirectory) throw new VigilError('NOT_A_MODEL', `${modelDir} is a file, not a model folder`);
}

async function readRequiredJsonObject(file: string): Promise<JsonObject> {
  const text = await readOptionalText(file);
  if (text === undefined) {
    throw new VigilError(
      'NOT_A_MODEL',
      `${file} is missing; a model folder needs the Hugging Face tokenizer files tokenizer.json and tokenizer_config.json`,
    );
  }
  return parseJsonObject(text, file);
}

function parseJsonObject(text: string, file: string): JsonObject {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new VigilError('CORRUPT_MODEL', `${file} is not valid JSON (${errorMessage(error)}); the file may be truncated or damaged`, { cause: error });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new VigilError('CORRUPT_MODEL', `${file} must contain a JSON object`);
  }
  return value as JsonObject;
}

/** The file's text, or undefined when it does not exist. */
async function readOptionalText(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw new VigilError('FILE_NOT_FOUND', `cannot read ${file}: ${errorMessage(error)}`, { cause: error });
  }
}

/**
 * The chat template, looked up as a Hugging Face *processor* finds it (transformers'
 * ProcessorMixin.get_processor_dict, then apply_chat_template), since Vigil renders prompts for
 * the whole vision-language model:
 *  1. `chat_template.json` (the legacy processor file; the processor reads it before the .jinja),
 *  2. `chat_template.jinja`,
 *  3. the `chat_template` key of `processor_config.json` (deprecated, still read by the processor),
 *  4. last resort, the tokenizer's own `tokenizer_config.json` `chat_template`. A processor never
 *     falls back to it, and for LLaVA-OneVision it may be the language model's text-only template,
 *     but a folder with no processor template (tokenizer-only exports) still gets one.
 */
async function findChatTemplate(modelDir: string, config: JsonObject, configFile: string): Promise<ChatTemplateSource | undefined> {
  const legacyFile = path.join(modelDir, 'chat_template.json');
  const legacy = await readOptionalText(legacyFile);
  if (legacy !== undefined) {
    const found = pickTemplate(parseJsonObject(legacy, legacyFile).chat_template, legacyFile);
    if (found !== undefined) return { text: found, file: legacyFile };
  }

  const jinjaFile = path.join(modelDir, 'chat_template.jinja');
  const jinja = await readOptionalText(jinjaFile);
  if (jinja !== undefined) return { text: jinja, file: jinjaFile };

  const processorFile = path.join(modelDir, 'processor_config.json');
  const processor = await readOptionalText(processorFile);
  if (processor !== undefined) {
    const found = pickTemplate(parseJsonObject(processor, processorFile).chat_template, processorFile);
    if (found !== undefined) return { text: found, file: processorFile };
  }

  const fromConfig = pickTemplate(config.chat_template, configFile);
  if (fromConfig !== undefined) return { text: fromConfig, file: configFile };
  return undefined;
}

/** A template string, or from a list of named templates the `default` one, else the first. */
function pickTemplate(value: unknown, file: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const named = value.filter(
      (entry): entry is { name: unknown; template: string } =>
        typeof entry === 'object' && entry !== null && typeof (entry as JsonObject).template === 'string',
    );
    const chosen = named.find((entry) => entry.name === 'default') ?? named[0];
    if (chosen) return chosen.template;
  }
  throw new VigilError('BAD_CONFIG', `${file}: "chat_template" must be a string or a list of {name, template}`);
}

function isNotFound(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
