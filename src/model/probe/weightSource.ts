/** What a weight is for, so a generator can pick its initial values (random or hand-set). */
export type WeightRole = 'linear' | 'query_key' | 'embedding' | 'norm' | 'bias' | 'position';

/**
 * Supplies float32 values for a named weight of the given dims. Probe-random models draw seeded
 * random numbers; the needle model (hand-constructed) returns exact values for the same names.
 */
export type WeightSource = (name: string, dims: readonly number[], role: WeightRole) => Float32Array;
