import cliProgress from 'cli-progress';

export interface StageProgress {
  update(done: number, total: number, label: string): void;
  stop(): void;
}

/**
 * A progress bar on stderr when it is a terminal; otherwise one line per label change, so logs and
 * CI output stay readable. stdout is left for results that scripts read.
 */
export function stageProgress(title: string, quiet = false): StageProgress {
  if (quiet) return { update() {}, stop() {} };
  if (!process.stderr.isTTY) {
    // Logs get a line per stage, and at most one progress line every 5 s within a stage.
    let lastStage = '';
    let lastAt = 0;
    return {
      update(done, total, label) {
        const stage = label.replace(/[\d.]+/g, '#');
        const now = Date.now();
        if (stage !== lastStage || now - lastAt >= 5000) {
          process.stderr.write(`${title}: ${label} (${done}/${total})\n`);
          lastStage = stage;
          lastAt = now;
        }
      },
      stop() {},
    };
  }
  const bar = new cliProgress.SingleBar(
    { format: `${title} [{bar}] {percentage}% | ETA {eta_formatted} | {label}`, stream: process.stderr, hideCursor: true, clearOnComplete: true, etaBuffer: 20 },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(done, total, label) {
      if (!started) bar.start(total, done, { label });
      started = true;
      bar.setTotal(total);
      bar.update(done, { label });
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
