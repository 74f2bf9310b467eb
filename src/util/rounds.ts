/**
 * Group commit: a piece of work (a sync) run in rounds, one round in flight at a time. A caller
 * waits for a round that STARTED after its call, so the round covers whatever the caller did
 * before calling; callers that arrive while a round runs share the next one. A round that fails
 * fails every caller that waited for it (the work must leave what it did not finish for the next
 * round); the round after it starts afresh.
 */
export class Rounds {
  /** The round running now, if any. */
  private running: Promise<void> | null = null;
  /** The round that starts when the running one ends: callers that come now wait for it. */
  private next: Promise<void> | null = null;

  constructor(private readonly work: () => Promise<void>) {}

  /** Resolves when a round that started after this call has completed (rejects if it failed). */
  run(): Promise<void> {
    if (this.next) return this.next;
    const before = this.running ?? Promise.resolve();
    const round: Promise<void> = before
      .catch(() => undefined)
      .then(() => {
        // From here on, newcomers wait for the round after this one.
        this.next = null;
        this.running = round;
        return this.work();
      })
      .finally(() => {
        if (this.running === round) this.running = null;
      });
    this.next = round;
    return round;
  }

  /** Resolves when no round is running or waiting to run (failures ignored). */
  async idle(): Promise<void> {
    while (this.running || this.next) await (this.next ?? this.running)!.catch(() => undefined);
  }
}
