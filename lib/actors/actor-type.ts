/**
 * One actor type: a name bound to an XState v5 machine, with the machinery to compute
 * transitions purely and fast.
 *
 * XState's `transition()` builds a throw-away actor scope on every call, which makes it
 * ~7x slower than `actor.send`. Here one inert scope is built per actor type and reused:
 * `machine.transition(snapshot, event, scope)` is still pure (actions are collected,
 * not executed), at the speed of a live actor.
 */
import { createActor, type AnyActorScope, type AnyMachineSnapshot, type AnyStateMachine, type EventObject } from 'xstate';
import { InvalidEventError } from '../errors.js';
import { hasOwnProtoKey, isEventObject } from '../codec/codec.js';
import { machineFingerprint } from './fingerprint.js';

/** An action XState asked to execute (see XState's `ExecutableActionObject`). */
export interface ExecutableAction {
  readonly type: string;
  readonly info: unknown;
  readonly params: unknown;
  readonly exec: ((info: unknown, params: unknown) => void) | undefined;
}

export interface Step {
  readonly snapshot: AnyMachineSnapshot;
  /** True when the machine took a transition (state, context or actions). */
  readonly changed: boolean;
  readonly actions: readonly ExecutableAction[];
}

export class ActorType {
  readonly fingerprint: string;
  private readonly scope: AnyActorScope;
  private readonly events: ReadonlySet<string>;
  private readonly acceptsAnyEvent: boolean;
  private collected: ExecutableAction[] = [];
  /** Restored snapshots by state value (see `restore`). */
  private readonly restored = new Map<string, AnyMachineSnapshot>();

  constructor(
    readonly name: string,
    readonly machine: AnyStateMachine,
  ) {
    this.fingerprint = machineFingerprint(machine);
    this.events = new Set(machine.events);
    this.acceptsAnyEvent = this.events.has('*');
    const self = createActor(machine);
    const noop = () => {};
    this.scope = {
      self,
      system: self.system,
      id: '',
      sessionId: '',
      logger: noop,
      defer: noop,
      emit: noop,
      stopChild: noop,
      actionExecutor: (action: ExecutableAction) => {
        this.collected.push(action);
      },
    } as unknown as AnyActorScope;
  }

  /** Throws `InvalidEventError` unless `event` is an event object this machine handles somewhere. */
  validateEvent(event: unknown): void {
    if (!isEventObject(event)) {
      throw new InvalidEventError(this.name, event, 'expected an object with a non-empty string "type"');
    }
    if (!this.acceptsAnyEvent && !this.events.has(event.type)) {
      throw new InvalidEventError(this.name, event, `the machine "${this.machine.id}" never handles "${event.type}"`);
    }
    // `JSON.parse` makes `__proto__` an own key; a machine merging the event with
    // `Object.assign` would then replace its context's prototype. Decoding drops such keys,
    // so a command from this process is refused rather than applied differently here.
    if (hasOwnProtoKey(event)) {
      throw new InvalidEventError(this.name, event, 'it has an own "__proto__" key');
    }
  }

  /** The snapshot of a new actor (no events yet). Initial entry actions are not run. */
  initial(input: unknown): AnyMachineSnapshot {
    const snapshot = this.machine.getInitialSnapshot(this.scope, input) as AnyMachineSnapshot;
    this.collected = [];
    return snapshot;
  }

  /** Pure: the next snapshot and the actions to run once the event is durable. */
  step(snapshot: AnyMachineSnapshot, event: EventObject): Step {
    this.collected = [];
    const next = this.machine.transition(snapshot, event, this.scope) as AnyMachineSnapshot;
    const actions = this.collected;
    this.collected = [];
    return { snapshot: next, changed: next !== snapshot || actions.length > 0, actions };
  }

  /** Replay of a stored event: the next snapshot; actions are discarded, never run. */
  replay(snapshot: AnyMachineSnapshot, event: EventObject): AnyMachineSnapshot {
    const next = this.machine.transition(snapshot, event, this.scope) as AnyMachineSnapshot;
    if (this.collected.length) this.collected = [];
    return next;
  }

  /**
   * The persisted snapshot, without XState's own top-level fields that are undefined
   * (`output` and `error` of a running actor): restoring reads them as undefined anyway,
   * and without them a JSON-only state skips superjson's walk when it is encoded.
   *
   * A snapshot with no children, no history, no output or error and no actor reference in
   * its context persists as XState would write it (the same keys in the same order)
   * without XState's copy of every field; any other goes through XState. Copied rather
   * than deleted from: `delete` turns the object into a slow dictionary. For an account,
   * persisting and then encoding took 8.6 + 5.1 µs with `delete`, and 6.1 + 3.7 µs
   * copied (a migration persists every actor it moves).
   */
  persist(snapshot: AnyMachineSnapshot): unknown {
    if (isPlain(snapshot as unknown as Record<string, unknown>, isActorRef)) {
      const { status, value, context } = snapshot;
      return { status, value, historyValue: {}, context, children: {} };
    }
    const persisted = this.machine.getPersistedSnapshot(snapshot) as Record<string, unknown>;
    const defined: Record<string, unknown> = {};
    for (const key in persisted) if (persisted[key] !== undefined) defined[key] = persisted[key];
    return defined;
  }

  /**
   * XState's `restoreSnapshot`, which resolves the state nodes of the persisted value
   * every time (19 µs an account in an unloaded B9 plan, on every actor a destination
   * installs). A persisted snapshot with no children, no history, no output or error and
   * no persisted actor reference in its context restores, by XState, to the snapshot of
   * any other such one with the same value, but for its context: those are restored once
   * per value and copied with the actor's own context.
   */
  restore(persisted: unknown): AnyMachineSnapshot {
    const key = restoredKey(persisted);
    const template = key === undefined ? undefined : this.restored.get(key);
    if (template) return { ...template, context: (persisted as { context: unknown }).context, children: {}, historyValue: {} } as AnyMachineSnapshot;
    const snapshot = this.machine.restoreSnapshot!(persisted as never, this.scope) as AnyMachineSnapshot;
    this.collected = [];
    if (key !== undefined && this.restored.size < MAX_RESTORED) this.restored.set(key, snapshot);
    return snapshot;
  }
}

/** Most state values an actor type keeps a restored snapshot for (see `restore`). */
const MAX_RESTORED = 1024;

function isEmpty(value: unknown): boolean {
  if (value === undefined) return true;
  if (value === null || typeof value !== 'object') return false;
  for (const _ in value) return false;
  return true;
}

/** XState's test for an actor reference in a context it persists. */
const isActorRef = (value: object) => 'sessionId' in value && 'send' in value && 'ref' in value;

/** XState's test for a persisted actor reference in a context it restores. */
const isPersistedActorRef = (value: object) => 'xstate$$type' in value;

/** True when an object in `value` passes `test`, or it is nested deeper than 64 levels (not worth a look). */
function holds(value: unknown, test: (value: object) => boolean, depth = 0): boolean {
  if (value === null || typeof value !== 'object') return false;
  if (depth > 64 || test(value)) return true;
  for (const key in value) if (holds((value as Record<string, unknown>)[key], test, depth + 1)) return true;
  return false;
}

/**
 * A snapshot, or its persisted form, that XState would persist or restore field by field
 * with nothing to copy or revive: active, no output or error, no history, no children,
 * and no object in its context that `isRef` takes for an actor reference.
 */
function isPlain(snapshot: Record<string, unknown>, isRef: (value: object) => boolean): boolean {
  const { status, context, children, historyValue, output, error } = snapshot;
  return (
    status === 'active' &&
    output === undefined &&
    error === undefined &&
    isEmpty(historyValue) &&
    children !== null &&
    typeof children === 'object' &&
    isEmpty(children) &&
    context !== null &&
    typeof context === 'object' &&
    !holds(context, isRef)
  );
}

/** The key a persisted snapshot's restored form is kept under, or undefined when it cannot be shared (see `ActorType.restore`). */
function restoredKey(persisted: unknown): string | undefined {
  if (persisted === null || typeof persisted !== 'object' || !isPlain(persisted as Record<string, unknown>, isPersistedActorRef)) return undefined;
  const { value } = persisted as { value: unknown };
  if (typeof value === 'string') return `s${value}`;
  return value !== null && typeof value === 'object' ? `o${JSON.stringify(value)}` : undefined;
}
