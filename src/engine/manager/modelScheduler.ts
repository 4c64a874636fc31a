import { VigilError } from '../../../common/errors.js';

/** What a model job is for: answering a question, or encoding one frame of a stream. */
export type JobKind = 'question' | 'frame';

interface Job {
  run: () => void;
}

export interface SchedulerStats {
  running: { owner: string; kind: JobKind } | null;
  queuedQuestions: number;
  queuedFrames: number;
  completed: { question: number; frame: number };
}

/**
 * Jobs of one kind, queued per owner (stream) and served round-robin between owners: a Map keeps
 * insertion order, so serving an owner and re-inserting it moves it to the back of the rotation.
 */
class RoundRobin {
  private readonly lanes = new Map<string, Job[]>();
  private count = 0;

  push(owner: string, job: Job): void {
    const lane = this.lanes.get(owner);
    if (lane) lane.push(job);
    else this.lanes.set(owner, [job]);
    this.count++;
  }

  shift(): { owner: string; job: Job } | undefined {
    const first = this.lanes.entries().next();
    if (first.done) return undefined;
    const [owner, lane] = first.value;
    const job = lane.shift()!;
    this.lanes.delete(owner);
    if (lane.length > 0) this.lanes.set(owner, lane);
    this.count--;
    return { owner, job };
  }

  remove(owner: string, job: Job): boolean {
    const lane = this.lanes.get(owner);
    const at = lane?.indexOf(job) ?? -1;
    if (!lane || at < 0) return false;
    lane.splice(at, 1);
    if (lane.length === 0) this.lanes.delete(owner);
    this.count--;
    return true;
  }

  size(owner?: string): number {
    return owner === undefined ? this.count : (this.lanes.get(owner)?.length ?? 0);
  }
}

/**
 * The one gate in front of the model. The decoder is not re-entrant and every stream shares it, so
 * all model work of all streams (frame encodes, questions, session opens) runs here, one job at a
 * time. Questions go before frames, so a question waits for at most the frame being encoded, not
 * for a backlog; within a kind, owners take turns (round-robin), so one busy camera cannot starve
 * another. To keep ingest moving under a steady question load, a waiting frame is served after
 * `maxQuestionBurst` questions in a row.
 */
export class ModelScheduler {
  private readonly queues: Record<JobKind, RoundRobin> = { question: new RoundRobin(), frame: new RoundRobin() };
  private running: { owner: string; kind: JobKind } | null = null;
  private questionBurst = 0;
  private readonly completed = { question: 0, frame: 0 };

  constructor(private readonly maxQuestionBurst = 4) {}

  /**
   * Runs `task` when its turn comes. An abort before the turn removes the job (the promise rejects
   * with CANCELLED); once started, the task runs to completion.
   */
  run<T>(owner: string, kind: JobKind, task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) return Promise.reject(cancelled());
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        if (this.queues[kind].remove(owner, job)) reject(cancelled());
      };
      const job: Job = {
        run: () => {
          signal?.removeEventListener('abort', onAbort);
          this.running = { owner, kind };
          // A task that throws before returning its promise must not leave the model marked busy
          // (that would stop every stream's frames and questions for good).
          let result: Promise<T>;
          try {
            result = task();
          } catch (error) {
            result = Promise.reject(error as Error);
          }
          result
            .then(resolve, reject)
            .finally(() => {
              this.running = null;
              this.completed[kind]++;
              this.pump();
            });
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queues[kind].push(owner, job);
      this.pump();
    });
  }

  /** Jobs waiting (not running), of one kind and optionally one owner. */
  queued(kind: JobKind, owner?: string): number {
    return this.queues[kind].size(owner);
  }

  stats(): SchedulerStats {
    return {
      running: this.running ? { ...this.running } : null,
      queuedQuestions: this.queues.question.size(),
      queuedFrames: this.queues.frame.size(),
      completed: { ...this.completed },
    };
  }

  private pump(): void {
    if (this.running) return;
    const preferFrame = this.questionBurst >= this.maxQuestionBurst && this.queues.frame.size() > 0;
    const question = preferFrame ? undefined : this.queues.question.shift();
    const next = question ?? this.queues.frame.shift();
    if (!next) return;
    this.questionBurst = question ? this.questionBurst + 1 : 0;
    next.job.run();
  }
}

function cancelled(): VigilError {
  return new VigilError('CANCELLED', 'the request was cancelled before it ran');
}
