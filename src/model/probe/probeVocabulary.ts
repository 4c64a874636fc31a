/**
 * Strings that the probe tokenizer keeps as single tokens: the chat roles, the video frame prompt and
 * the needle question family ("What color was the square on the red screen?"), so prompts are short
 * and a color name is exactly one token.
 */
export const PROBE_COLORS = ['red', 'green', 'blue', 'yellow', 'cyan', 'magenta', 'white', 'orange'] as const;

export const PROBE_WORDS: readonly string[] = [
  'User',
  'Assistant',
  'System',
  'Frame',
  ' from',
  'What',
  ' what',
  ' color',
  ' was',
  ' is',
  ' the',
  ' square',
  ' on',
  ' screen',
  ' in',
  ' this',
  ' image',
  ' video',
  ' unknown',
  ...PROBE_COLORS.map((c) => ` ${c}`),
  ...PROBE_COLORS,
];
