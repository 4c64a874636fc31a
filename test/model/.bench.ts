import { buildProbeTokenizer } from '../../src/model/probe/probeTokenizer.js';
import { VlmTokenizer } from '../../src/model/tokenizer.js';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os'; import path from 'node:path';
const spec = { vocabSize: 49280, words: [' red', ' green', ' color', ' square', 'What', ' screen', '?', 'Frame', ' from'] };
for (let k = 0; k < 3; k++) {
let t = performance.now();
const f = buildProbeTokenizer(spec);
const tb = performance.now() - t;
const j = (f.tokenizerJson as any);
const dir = await mkdtemp(path.join(os.tmpdir(), 'vb-'));
t = performance.now();
await writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(f.tokenizerJson));
await writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify(f.tokenizerConfigJson));
const tw = performance.now() - t;
t = performance.now();
const tok = await VlmTokenizer.load(dir);
const tl = performance.now() - t;
console.log({ tb, tw, tl, merges: j.model.merges.length, vocab: Object.keys(j.model.vocab).length, added: j.added_tokens.length, size: JSON.stringify(f.tokenizerJson).length, vs: tok.vocabSize });
}
const f = buildProbeTokenizer(spec); const j = f.tokenizerJson as any;
const ids = Object.values(j.model.vocab) as number[];
const fill = ids.filter((id, i) => Object.keys(j.model.vocab)[i]!.startsWith('<unused_'));
console.log('fillers', fill.length, Math.min(...fill), Math.max(...fill));
const tok = await VlmTokenizer.load(path.dirname(path.join(os.tmpdir(), 'x')) ) .catch(e=>String(e));
console.log(tok);
const t2 = await (async()=>{const d=await mkdtemp(path.join(os.tmpdir(),'vb-'));await writeFile(path.join(d,'tokenizer.json'),JSON.stringify(f.tokenizerJson));await writeFile(path.join(d,'tokenizer_config.json'),JSON.stringify(f.tokenizerConfigJson));return VlmTokenizer.load(d)})();
for (const s of ['Frame from 00:12: what color?', 'What is on the screen?', 'The red square moved to the left.']) console.log(s, t2.encode(s).map(i=>t2.idToToken(i)));
console.log(t2.decode([5000, 5001, 49279, 49200]));
