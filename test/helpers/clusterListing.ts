// What the tests and benches of a cluster read from `GET /v1/streams` on a node (merged over the
// live nodes): the fields they check of each stream.
export interface ListedStream {
  id: string;
  /** The owner node and its lease epoch (cluster mode). */
  owner?: string;
  epoch?: number;
  state: string;
  frames: number;
  progress: { t: number };
}
