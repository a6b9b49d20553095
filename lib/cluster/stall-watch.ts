/**
 * `StallWatch`: tells a periodic timer how much time its own process lost to a stall (a
 * blocked event loop, a long collection, a paused VM) since the timer last ran.
 *
 * A timer that runs more than `thresholdMs` after its previous run was held up by this
 * process, not by anyone it waits to hear from: nothing could be heard meanwhile either.
 * Membership credits that time to its peers' deadlines and the leader lease to the
 * revision it watches, so that a node's own stall never counts as another's silence.
 * Lateness at or under the threshold earns no credit, so a process whose timers are
 * always somewhat late still judges a silent peer.
 */
export class StallWatch {
  private last = 0;

  constructor(
    /** The timer's period. */
    private readonly intervalMs: number,
    /** A gap between two runs longer than this is a stall. */
    readonly thresholdMs: number,
  ) {}

  /** The timer starts now. */
  start(now: number = Date.now()): void {
    this.last = now;
  }

  /** Called on every run of the timer: the time lost to a stall since the last run, or 0. */
  lost(now: number = Date.now()): number {
    const gap = now - this.last;
    this.last = now;
    return gap > this.thresholdMs ? gap - this.intervalMs : 0;
  }

  /** The timer should have run by now and has not: the process is coming out of a stall. */
  overdue(now: number = Date.now()): boolean {
    return now - this.last > this.thresholdMs;
  }
}
