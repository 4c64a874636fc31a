/**
 * Tokenizer files for Vigil's generated "probe" models.
 *
 * Probe models have random weights but SmolVLM2's geometry (vocab 49280) and SmolVLM2's special
 * token ids, so the same loader, prompt builder and stop-token logic serve real and probe models.
 * The tokenizer is a GPT-2 style byte-level BPE in the Hugging Face `tokenizer.json` format:
 *
 *   id 0..2          <|endoftext|>, <|im_start|>, <|im_end|>   (special, as in SmolLM)
 *   id 3..258        the 256 byte symbols, in byte order
 *   id 259..         one entry per merge, learned from `words` plus a small English word list
 *   then ..49151     unreachable fillers `<unused_N>` (no merge produces them)
 *   49152..49190     image specials: <global-img>, <row_r_col_c>, <fake_token_around_image>, <image>
 *   49191..49278     unreachable fillers (SmolVLM2 has reserved ids here too)
 *   49279            <end_of_utterance>
 *
 * Everything is derived from the spec with deterministic tie-breaks, so the same spec always
 * serialises to byte-identical JSON.
 */

export interface ProbeTokenizerSpec {
  /** Total number of ids, including specials and fillers (SmolVLM2: 49280). */
  vocabSize: number;
  /** Strings that must each encode to exactly one token (e.g. " red", "What", "?"). */
  words: string[];
}

export interface ProbeTokenizerFiles {
  tokenizerJson: unknown;
  tokenizerConfigJson: unknown;
}

const BOS = '<|im_start|>';
const END_OF_UTTERANCE = '<end_of_utterance>';
const IMAGE_TOKEN = '<image>';
const FAKE_IMAGE_TOKEN = '<fake_token_around_image>';
const GLOBAL_IMAGE_TOKEN = '<global-img>';

/** SmolVLM2's first added image token; everything below it belongs to the text vocab. */
const FIRST_IMAGE_SPECIAL_ID = 49152;
const END_OF_UTTERANCE_ID = 49279;
const GRID_SIDE = 6;
const FIRST_BYTE_ID = 3;

/**
 * SmolVLM2's turn format, written for this project: a single `<|im_start|>` opens the
 * conversation, each turn is `Role:` (no space when its first item is an image, so the image
 * tokens follow the colon directly) and ends with `<end_of_utterance>\n`.
 */
const SMOLVLM_CHAT_TEMPLATE = [
  "{{- '<|im_start|>' -}}",
  '{%- for message in messages -%}',
  "{{- message['role'] | capitalize -}}",
  "{%- if message['content'] is string -%}",
  "{{- ': ' + message['content'] -}}",
  '{%- else -%}',
  "{%- if message['content'] | length > 0 and message['content'][0]['type'] == 'image' -%}",
  "{{- ':' -}}",
  '{%- else -%}',
  "{{- ': ' -}}",
  '{%- endif -%}',
  "{%- for item in message['content'] -%}",
  "{%- if item['type'] == 'text' -%}{{- item['text'] -}}",
  "{%- elif item['type'] == 'image' -%}{{- '<image>' -}}",
  "{%- elif item['type'] == 'video' -%}{{- '<video>' -}}",
  '{%- endif -%}',
  '{%- endfor -%}',
  '{%- endif -%}',
  "{{- '<end_of_utterance>\\n' -}}",
  '{%- endfor -%}',
  "{%- if add_generation_prompt -%}{{- 'Assistant:' -}}{%- endif -%}",
].join('');

/**
 * Extra training words so probe prompts tokenize into word-sized pieces like a real tokenizer
 * would (a few hundred merges); not required for correctness.
 */
const COMMON_WORDS = [
  'the', 'of', 'and', 'to', 'in', 'is', 'it', 'that', 'for', 'on', 'with', 'as', 'was', 'at', 'by',
  'be', 'this', 'are', 'or', 'from', 'an', 'but', 'not', 'what', 'which', 'you', 'all', 'they',
  'there', 'one', 'have', 'has', 'had', 'were', 'can', 'when', 'where', 'who', 'how', 'why', 'do',
  'does', 'did', 'see', 'seen', 'saw', 'show', 'shown', 'video', 'image', 'frame', 'frames',
  'color', 'colour', 'red', 'green', 'blue', 'yellow', 'black', 'white', 'orange', 'purple',
  'square', 'circle', 'shape', 'screen', 'left', 'right', 'top', 'bottom', 'center', 'before',
  'after', 'time', 'second', 'seconds', 'minute', 'person', 'people', 'man', 'woman', 'car',
  'door', 'room', 'table', 'hand', 'moving', 'appears', 'there', 'here', 'then', 'now', 'first',
  'last', 'next', 'yes', 'no', 'answer', 'question', 'describe', 'happened', 'happens', 'during',
  'between', 'into', 'out', 'up', 'down', 'about', 'over', 'under', 'some', 'many', 'more',
  'other', 'than', 'only', 'also', 'just', 'like', 'would', 'could', 'should', 'will', 'my',
  'your', 'his', 'her', 'its', 'their', 'we', 'he', 'she', 'them', 'been', 'being', 'so', 'if',
  'each', 'any', 'new', 'old', 'large', 'small', 'big', 'number', 'count', 'object', 'objects',
  'scene', 'camera', 'background', 'text', 'user', 'assistant', 'system',
];

/** Capitalised sentence starters, which the ByteLevel split keeps without a leading space. */
const SENTENCE_STARTERS = ['The', 'What', 'Which', 'Where', 'When', 'Who', 'How', 'Why', 'Is', 'Are', 'Do', 'Does', 'Describe', 'Frame', 'User', 'Assistant', 'System', 'You', 'It', 'There', 'Yes', 'No'];

/**
 * The pre-tokenizer, as in SmolLM2's tokenizer: every digit on its own (so timestamps such as
 * "00:12" cost the same number of tokens as with the real model), then GPT-2's ByteLevel split.
 */
const PRE_TOKENIZER = {
  type: 'Sequence',
  pretokenizers: [
    { type: 'Digits', individual_digits: true },
    { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
  ],
};
const DIGIT_SPLIT_PATTERN = /[^\d]+|\d/gu;
/** GPT-2's pre-tokenizer split, as the ByteLevel pre-tokenizer applies it with `use_regex`. */
const BYTE_LEVEL_SPLIT_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** The pieces PRE_TOKENIZER cuts `text` into; BPE merges never cross them. */
function preTokenize(text: string): string[] {
  return (text.match(DIGIT_SPLIT_PATTERN) ?? []).flatMap((piece) => piece.match(BYTE_LEVEL_SPLIT_PATTERN) ?? []);
}

interface SpecialToken {
  id: number;
  content: string;
}

export function buildProbeTokenizer(spec: ProbeTokenizerSpec): ProbeTokenizerFiles {
  if (!Number.isInteger(spec.vocabSize) || spec.vocabSize !== END_OF_UTTERANCE_ID + 1) {
    // The special ids are SmolVLM2's, so only SmolVLM2's vocab size keeps them all in range.
    throw new Error(`probe tokenizer: vocabSize must be ${END_OF_UTTERANCE_ID + 1} (SmolVLM2), got ${spec.vocabSize}`);
  }
  const specials = specialTokens();
  const specialIds = new Set(specials.map((token) => token.id));

  const byteSymbols = byteToUnicode();
  const trainingWords = trainingCorpus(spec.words, byteSymbols);
  const merges = learnMerges(trainingWords);
  checkSingleTokens(spec.words, trainingWords, merges);

  // tokens[id] = vocab string. Ids are handed out in order, skipping the fixed special ids, so
  // the specials never move whatever the words are.
  const tokens = new Array<string | undefined>(spec.vocabSize);
  const inVocab = new Set<string>();
  let nextId = FIRST_BYTE_ID;
  const assign = (token: string): void => {
    while (specialIds.has(nextId)) nextId++;
    tokens[nextId++] = token;
    inVocab.add(token);
  };
  for (const token of specials) if (token.id < FIRST_BYTE_ID) tokens[token.id] = token.content;
  for (const symbol of byteSymbols) assign(symbol);
  for (const [left, right] of merges) {
    if (!inVocab.has(left + right)) assign(left + right);
  }
  if (nextId > FIRST_IMAGE_SPECIAL_ID) {
    throw new Error(`probe tokenizer: ${merges.length} merges do not fit below id ${FIRST_IMAGE_SPECIAL_ID}; use fewer or shorter words`);
  }
  // Fillers only pad the id space: no merge builds them and they are not added tokens, so no
  // input text can produce them; decoding one prints its name, which makes random output legible.
  // They cannot collide with merges ("<" and "_" never merge with letters in one pre-token).
  const vocab: Record<string, number> = {};
  for (let id = 0; id < spec.vocabSize; id++) {
    if (id >= FIRST_BYTE_ID && specialIds.has(id)) continue;
    vocab[tokens[id] ?? `<unused_${id}>`] = id;
  }

  const addedTokens = specials.map((token) => ({
    id: token.id,
    content: token.content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));

  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: PRE_TOKENIZER,
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: merges.map(([left, right]) => [left, right]),
    },
  };

  const addedTokensDecoder: Record<string, object> = {};
  for (const token of addedTokens) {
    const { id, ...rest } = token;
    addedTokensDecoder[String(id)] = rest;
  }
  const tokenizerConfigJson = {
    add_bos_token: false,
    add_eos_token: false,
    added_tokens_decoder: addedTokensDecoder,
    additional_special_tokens: [FAKE_IMAGE_TOKEN, IMAGE_TOKEN, END_OF_UTTERANCE],
    bos_token: BOS,
    chat_template: SMOLVLM_CHAT_TEMPLATE,
    // Decoding must return exactly what was encoded (streamed answers are concatenated).
    clean_up_tokenization_spaces: false,
    end_of_utterance_token: END_OF_UTTERANCE,
    eos_token: END_OF_UTTERANCE,
    fake_image_token: FAKE_IMAGE_TOKEN,
    global_image_token: GLOBAL_IMAGE_TOKEN,
    image_token: IMAGE_TOKEN,
    model_max_length: 8192,
    pad_token: '<|im_end|>',
    tokenizer_class: 'GPT2Tokenizer',
    unk_token: '<|endoftext|>',
  };

  return { tokenizerJson, tokenizerConfigJson };
}

/** SmolVLM2's special tokens at SmolVLM2's ids, in id order. */
function specialTokens(): SpecialToken[] {
  const tokens: SpecialToken[] = [
    { id: 0, content: '<|endoftext|>' },
    { id: 1, content: BOS },
    { id: 2, content: '<|im_end|>' },
    { id: FIRST_IMAGE_SPECIAL_ID, content: GLOBAL_IMAGE_TOKEN },
  ];
  for (let row = 1; row <= GRID_SIDE; row++) {
    for (let col = 1; col <= GRID_SIDE; col++) {
      tokens.push({ id: FIRST_IMAGE_SPECIAL_ID + 1 + (row - 1) * GRID_SIDE + (col - 1), content: `<row_${row}_col_${col}>` });
    }
  }
  tokens.push({ id: 49189, content: FAKE_IMAGE_TOKEN });
  tokens.push({ id: 49190, content: IMAGE_TOKEN });
  tokens.push({ id: END_OF_UTTERANCE_ID, content: END_OF_UTTERANCE });
  return tokens;
}

/**
 * GPT-2's reversible byte -> printable character table: printable Latin-1 bytes stand for
 * themselves, the rest are shifted to U+0100 and up (space becomes "Ġ"). Index = byte value.
 */
function byteToUnicode(): string[] {
  const table = new Array<string>(256);
  const isPrintable = (b: number): boolean => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let shifted = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = String.fromCodePoint(isPrintable(b) ? b : 256 + shifted++);
  }
  return table;
}

function toByteSymbols(text: string, table: string[]): string[] {
  return Array.from(new TextEncoder().encode(text), (b) => table[b]!);
}

interface TrainingWord {
  symbols: string[];
  weight: number;
}

/** The spec words (must each be one pre-token) plus the English list, deduplicated in order. */
function trainingCorpus(words: string[], table: string[]): Map<string, TrainingWord> {
  const corpus = new Map<string, TrainingWord>();
  const add = (word: string, weight: number): void => {
    const symbols = toByteSymbols(word, table);
    const key = symbols.join('');
    const existing = corpus.get(key);
    if (existing) existing.weight += weight;
    else corpus.set(key, { symbols, weight });
  };
  for (const word of words) {
    const pieces = preTokenize(word);
    if (pieces.length !== 1 || pieces[0] !== word) {
      // The pre-tokenizer splits before BPE runs, so no merge could join these pieces.
      throw new Error(`probe tokenizer: word ${JSON.stringify(word)} is split by the pre-tokenizer (digits, then ByteLevel) into ${JSON.stringify(pieces)}; each word must be one pre-token`);
    }
    add(word, 4);
  }
  for (const word of COMMON_WORDS) add(` ${word}`, 1);
  for (const word of SENTENCE_STARTERS) add(word, 1);
  return corpus;
}

/**
 * Plain BPE training: repeatedly merge the most frequent adjacent pair (ties: smaller pair in
 * code-unit order) until every training word is a single symbol. Merges are returned in rank order.
 */
function learnMerges(corpus: Map<string, TrainingWord>): Array<[string, string]> {
  const words = [...corpus.values()].map((word) => ({ symbols: [...word.symbols], weight: word.weight }));
  const merges: Array<[string, string]> = [];
  for (;;) {
    const counts = new Map<string, { left: string; right: string; count: number }>();
    for (const word of words) {
      for (let i = 0; i + 1 < word.symbols.length; i++) {
        const left = word.symbols[i]!;
        const right = word.symbols[i + 1]!;
        // A single space never occurs inside a byte-level symbol, so it is a safe separator.
        const key = `${left} ${right}`;
        const entry = counts.get(key);
        if (entry) entry.count += word.weight;
        else counts.set(key, { left, right, count: word.weight });
      }
    }
    let best: { key: string; left: string; right: string; count: number } | undefined;
    for (const [key, entry] of counts) {
      if (!best || entry.count > best.count || (entry.count === best.count && key < best.key)) best = { key, ...entry };
    }
    if (!best) return merges;
    merges.push([best.left, best.right]);
    for (const word of words) word.symbols = mergePair(word.symbols, best.left, best.right);
  }
}

function mergePair(symbols: string[], left: string, right: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < symbols.length; i++) {
    if (i + 1 < symbols.length && symbols[i] === left && symbols[i + 1] === right) {
      out.push(left + right);
      i++;
    } else {
      out.push(symbols[i]!);
    }
  }
  return out;
}

/**
 * Re-encodes every spec word the way a BPE tokenizer does at inference (lowest-rank pair first,
 * leftmost on ties) and fails loudly if one is not a single token, instead of shipping a
 * tokenizer whose probe words silently split.
 */
function checkSingleTokens(words: string[], corpus: Map<string, TrainingWord>, merges: Array<[string, string]>): void {
  const ranks = new Map<string, number>();
  merges.forEach(([left, right], rank) => {
    const key = `${left} ${right}`;
    if (!ranks.has(key)) ranks.set(key, rank);
  });
  const table = byteToUnicode();
  for (const word of words) {
    let symbols = [...(corpus.get(toByteSymbols(word, table).join(''))?.symbols ?? [])];
    for (;;) {
      let bestRank = Infinity;
      let bestAt = -1;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const rank = ranks.get(`${symbols[i]} ${symbols[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          bestAt = i;
        }
      }
      if (bestAt < 0) break;
      symbols = [...symbols.slice(0, bestAt), symbols[bestAt]! + symbols[bestAt + 1]!, ...symbols.slice(bestAt + 2)];
    }
    if (symbols.length !== 1) {
      throw new Error(`probe tokenizer: word ${JSON.stringify(word)} encodes to ${symbols.length} tokens (${JSON.stringify(symbols)})`);
    }
  }
}
