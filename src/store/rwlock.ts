/** Many readers or one writer; writers are not starved (new readers queue behind a waiting writer). */
export class RwLock {
  private readers = 0;
  private writer = false;
  private queue: { exclusive: boolean; go: () => void }[] = [];

  private pump(): void {
    while (this.queue.length) {
      const next = this.queue[0];
      if (next.exclusive) {
        if (this.writer || this.readers > 0) return;
        this.writer = true;
      } else {
        if (this.writer) return;
        this.readers++;
      }
      this.queue.shift();
      next.go();
    }
  }

  private acquire(exclusive: boolean): Promise<() => void> {
    return new Promise((resolve) => {
      this.queue.push({
        exclusive,
        go: () => {
          let released = false;
          resolve(() => {
            if (released) return;
            released = true;
            if (exclusive) this.writer = false;
            else this.readers--;
            this.pump();
          });
        },
      });
      this.pump();
    });
  }

  async shared<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire(false);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire(true);
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

/** A mutex is an exclusive-only lock. */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}
