import type { ProbeGraphContext } from './graphHelpers.js';
import { weight } from './graphHelpers.js';

/** embed_tokens: input_ids [B,S] int64 -> inputs_embeds [B,S,H] by Gather over the embedding table. */
export function buildEmbedGraph(ctx: ProbeGraphContext, vocabSize: number, hiddenSize: number): void {
  const { g } = ctx;
  const ids = g.input('input_ids', 'int64', ['batch_size', 'sequence_length']);
  const table = weight(ctx, 'model.embed_tokens.weight', [vocabSize, hiddenSize], 'embedding');
  const embeds = g.op('Gather', [table, ids], { axis: 0 }, { name: 'model/embed_tokens/Gather' });
  g.output(embeds, 'inputs_embeds', ctx.dtype, ['batch_size', 'sequence_length', hiddenSize]);
}
