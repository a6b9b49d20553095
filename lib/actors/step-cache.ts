/**
 * A machine's transitions remembered, for machines whose every run takes the same few
 * steps with different data: the migration machine steps through six states per actor
 * moved, and XState's `transition` costs about as much for each of them as a user
 * actor's command (B9 during a rebalance: a tenth of the event loop went to them).
 *
 * A step is keyed by the state, the event type and the context fields named
 * `decisionKeys`: the fields the machine's guards and actions read. Every other context
 * field is carried over, or set from what was learned. An event may carry data only in
 * the fields `recorded` names for its type: data the machine copies into its context and
 * never decides on (any other field, and the event goes to XState every time).
 *
 * What a step writes is learned the first time, by taking it twice with XState: on the
 * real snapshot and event, and on copies whose other context fields and recorded event
 * fields are replaced by unique probes. A context field the probe run left untouched is
 * not written; one that holds an event field's probe is copied from that field; any other
 * written field must come out the same in both runs (a constant, or computed from the
 * key). Any difference (a guard or action that reads something the key leaves out, a
 * written object, an exception) and the step is never remembered: XState takes it every
 * time. The probes are a net, not a proof: a guard whose answer for the probe happens to
 * match the real one (`context.owner === 'me'` for an owner that is not) goes unseen.
 * Leaving a field out of `decisionKeys`, or naming it `recorded`, is the machine author's
 * promise that no guard or action reads it; a spec holds the machine to it.
 *
 * States handed out are plain `{ value, context }` objects; XState's snapshot is rebuilt
 * (`machine.resolveState`) only when a step needs XState again. So this suits flat
 * machines without children, history or delayed events, run without an inspector.
 */
import type { AnyEventObject, AnyMachineSnapshot, EventObject } from 'xstate';
import type { ActorType } from './actor-type.js';

/** What a run of the machine is at: its state value and context. */
export interface StepState<Value = unknown, Context = Record<string, unknown>> {
  readonly value: Value;
  readonly context: Context;
}

/** A state, with XState's snapshot of it when one is at hand. */
export interface Stepped<Value = unknown, Context = Record<string, unknown>> {
  readonly state: StepState<Value, Context>;
  readonly snapshot?: AnyMachineSnapshot;
}

interface Learned {
  readonly value: unknown;
  /** Context fields set to a value. */
  readonly writes: Readonly<Record<string, unknown>>;
  /** Context fields set from an event field: [context field, event field]. */
  readonly copies: readonly (readonly [string, string])[];
}

/** Keys are bounded by the machine's states and its reachable decision values; past this, nothing more is learned. */
const MAX_LEARNED = 4096;

const isObject = (value: unknown) => (typeof value === 'object' && value !== null) || typeof value === 'function';

export class StepCache<Value = unknown, Context extends object = Record<string, unknown>> {
  /** By `keyOf`; null: taken by XState every time. */
  private readonly learned = new Map<string, Learned | null>();
  private hits = 0;
  private misses = 0;

  constructor(
    private readonly type: ActorType,
    private readonly decisionKeys: readonly (keyof Context & string)[],
    private readonly recorded: Readonly<Record<string, readonly string[]>> = {},
  ) {}

  /** Steps remembered and taken by XState so far (for specs and benchmarks). */
  stats(): { hits: number; misses: number; learned: number } {
    return { hits: this.hits, misses: this.misses, learned: this.learned.size };
  }

  /** The next state: remembered, or XState's `transition` (pure: actions are not run). */
  next(current: Stepped<Value, Context>, event: AnyEventObject): Stepped<Value, Context> {
    const shape = this.shapeOf(event);
    const key = shape === undefined ? undefined : this.keyOf(current.state, shape);
    if (key !== undefined) {
      const step = this.learned.get(key);
      if (step) {
        this.hits++;
        const context: Record<string, unknown> = { ...current.state.context, ...step.writes };
        for (const [field, from] of step.copies) context[field] = (event as unknown as Record<string, unknown>)[from];
        return { state: { value: step.value as Value, context: context as Context } };
      }
    }
    this.misses++;
    const snapshot = current.snapshot ?? this.snapshotOf(current.state);
    const next = this.type.replay(snapshot, event);
    if (key !== undefined && !this.learned.has(key) && this.learned.size < MAX_LEARNED) {
      this.learned.set(key, this.learn(snapshot, event, next));
    }
    return { state: next as unknown as StepState<Value, Context>, snapshot: next };
  }

  /**
   * The event's type and the fields it carries, when every one of them is recorded for
   * that type and holds no object; otherwise undefined.
   */
  private shapeOf(event: EventObject): string | undefined {
    const recorded = this.recorded[event.type];
    let shape = event.type;
    for (const field in event) {
      if (field === 'type') continue;
      if (!recorded?.includes(field) || isObject((event as unknown as Record<string, unknown>)[field])) return undefined;
      shape += `\u0000${field}`;
    }
    return shape;
  }

  /** Undefined when a decision field holds an object (its string would not tell two apart). */
  private keyOf(state: StepState<Value, Context>, shape: string): string | undefined {
    let key = `${typeof state.value === 'string' ? state.value : JSON.stringify(state.value)}\u0001${shape}`;
    for (const name of this.decisionKeys) {
      const value = state.context[name];
      if (isObject(value)) return undefined;
      key += `\u0000${typeof value}:${String(value)}`;
    }
    return key;
  }

  private snapshotOf(state: StepState<Value, Context>): AnyMachineSnapshot {
    return this.type.machine.resolveState({ value: state.value as never, context: state.context as never }) as AnyMachineSnapshot;
  }

  /** What the step from `before` on `event` writes, if it depends on nothing but the key (see the module comment). */
  private learn(before: AnyMachineSnapshot, event: EventObject, after: AnyMachineSnapshot): Learned | null {
    if (after.status !== 'active' && after.status !== 'done') return null;
    const context = before.context as Record<string, unknown>;
    const decisions = new Set<string>(this.decisionKeys);
    const probes: Record<string, unknown> = {};
    for (const name of Object.keys(context)) probes[name] = decisions.has(name) ? context[name] : { probe: name };
    const probeEvent: Record<string, unknown> = { type: event.type };
    const eventProbes = new Map<unknown, string>();
    for (const field of Object.keys(event)) {
      if (field === 'type') continue;
      const probe = { probe: `event.${field}` };
      probeEvent[field] = probe;
      eventProbes.set(probe, field);
    }
    let probed: AnyMachineSnapshot;
    try {
      probed = this.type.replay(this.snapshotOf({ value: before.value as Value, context: probes as Context }), probeEvent as EventObject);
    } catch {
      return null;
    }
    if (JSON.stringify(probed.value) !== JSON.stringify(after.value) || probed.status !== after.status) return null;
    const real = after.context as Record<string, unknown>;
    const fromProbe = probed.context as Record<string, unknown>;
    for (const name of Object.keys(context)) if (!(name in real)) return null;
    const writes: Record<string, unknown> = {};
    const copies: [string, string][] = [];
    for (const name of new Set([...Object.keys(real), ...Object.keys(fromProbe)])) {
      const value = fromProbe[name];
      if (!decisions.has(name) && name in probes && value === probes[name]) {
        // Untouched in the probe run: carried over, so it must be in the real run too.
        if (real[name] !== context[name]) return null;
        continue;
      }
      const from = eventProbes.get(value);
      if (from !== undefined) {
        // Copied from the event: so it must be in the real run too.
        if (!Object.is(real[name], (event as unknown as Record<string, unknown>)[from])) return null;
        copies.push([name, from]);
        continue;
      }
      // Written: the same in both runs, and a value, not a shared object.
      if (!Object.is(value, real[name]) || isObject(value)) return null;
      writes[name] = value;
    }
    return { value: after.value, writes, copies };
  }
}
