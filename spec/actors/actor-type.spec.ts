/**
 * `ActorType.persist` and `restore` take shortcuts past XState for plain snapshots (no
 * children, history, output, error or actor reference): they must be indistinguishable
 * from XState's `getPersistedSnapshot` and `restoreSnapshot`, and leave every other
 * snapshot to XState.
 */
import { expect } from 'chai';
import { assign, createActor, fromCallback, setup, type AnyMachineSnapshot, type AnyStateMachine } from 'xstate';
import { ActorType } from '../../lib/actors/actor-type.js';
import { account } from '../../examples/bank/account.machine.js';

/** XState's own persisted snapshot, with its undefined top-level fields left out. */
function xstatePersisted(machine: AnyStateMachine, snapshot: AnyMachineSnapshot): Record<string, unknown> {
  const persisted = machine.getPersistedSnapshot(snapshot) as Record<string, unknown>;
  return Object.fromEntries(Object.entries(persisted).filter(([, v]) => v !== undefined));
}

/** What a restored snapshot is made of, methods aside. */
function shape(snapshot: AnyMachineSnapshot) {
  return {
    keys: Object.keys(snapshot),
    status: snapshot.status,
    value: snapshot.value,
    context: snapshot.context,
    tags: [...snapshot.tags],
    nodes: (snapshot as unknown as { _nodes: { id: string }[] })._nodes.map((n) => n.id),
    children: Object.keys(snapshot.children),
    historyValue: snapshot.historyValue,
  };
}

const accountAfter = (type: ActorType, id: string, events: { type: string; amount?: number }[]) => {
  let snapshot = type.initial({ id });
  for (const event of events) snapshot = type.step(snapshot, event as never).snapshot;
  return snapshot;
};

describe('ActorType persist and restore', () => {
  it('persists a plain snapshot as XState does: the same keys, in the same order, the same JSON', () => {
    const type = new ActorType('account', account);
    for (const events of [[], [{ type: 'DEPOSIT', amount: 5 }], [{ type: 'DEPOSIT', amount: 5 }, { type: 'FREEZE' }], [{ type: 'CLOSE' }]]) {
      const snapshot = accountAfter(type, 'a-1', events);
      const persisted = type.persist(snapshot);
      expect(JSON.stringify(persisted)).to.equal(JSON.stringify(xstatePersisted(account, snapshot)));
    }
  });

  it('restores two actors in the same state each with its own context, as XState would, and they go on independently', () => {
    const type = new ActorType('account', account);
    const a = type.persist(accountAfter(type, 'a', [{ type: 'DEPOSIT', amount: 5 }])) as { context: unknown };
    const b = type.persist(accountAfter(type, 'b', [{ type: 'DEPOSIT', amount: 7 }, { type: 'DEPOSIT', amount: 1 }])) as { context: unknown };
    const restoredA = type.restore(JSON.parse(JSON.stringify(a)));
    const restoredB = type.restore(JSON.parse(JSON.stringify(b)));
    for (const [restored, persisted] of [
      [restoredA, a],
      [restoredB, b],
    ] as const) {
      const byXState = account.restoreSnapshot(JSON.parse(JSON.stringify(persisted)), createActor(account, { input: { id: 'x' } }) as never) as AnyMachineSnapshot;
      expect(shape(restored)).to.deep.equal(shape(byXState));
      expect(restored.matches('open')).to.equal(true);
      expect(restored.can({ type: 'WITHDRAW', amount: 1 })).to.equal(true);
    }
    expect(restoredA.context).to.not.equal(restoredB.context);
    const nextA = type.step(restoredA, { type: 'WITHDRAW', amount: 5 } as never).snapshot;
    const nextB = type.step(restoredB, { type: 'DEPOSIT', amount: 2 } as never).snapshot;
    expect(nextA.context).to.deep.equal({ id: 'a', balance: 0, deposits: 1 });
    expect(nextB.context).to.deep.equal({ id: 'b', balance: 10, deposits: 3 });
    expect(restoredA.context).to.deep.equal({ id: 'a', balance: 5, deposits: 1 });
  });

  it('restores states with nested values and leaves an unknown state to XState, which refuses it every time', () => {
    const nested = setup({ types: { context: {} as { n: number }, events: {} as { type: 'GO' } } }).createMachine({
      id: 'nested',
      context: { n: 0 },
      initial: 'a',
      states: { a: { initial: 'one', states: { one: { on: { GO: { target: 'two', actions: assign({ n: ({ context }) => context.n + 1 }) } } }, two: { tags: ['done-ish'] } } } },
    });
    const type = new ActorType('nested', nested);
    const two = type.step(type.initial(undefined), { type: 'GO' }).snapshot;
    const persisted = type.persist(two);
    const first = type.restore(JSON.parse(JSON.stringify(persisted)));
    const second = type.restore({ ...JSON.parse(JSON.stringify(persisted)), context: { n: 9 } });
    expect(second.value).to.deep.equal({ a: 'two' });
    expect(second.hasTag('done-ish')).to.equal(true);
    expect(second.context).to.deep.equal({ n: 9 });
    expect(first.context).to.deep.equal({ n: 1 });
    for (let i = 0; i < 2; i++) expect(() => type.restore({ ...JSON.parse(JSON.stringify(persisted)), value: { a: 'three' } })).to.throw();
  });

  it('leaves snapshots with children or actor references in their context to XState', () => {
    const machine = setup({
      types: { context: {} as { ref?: unknown; kept?: unknown } },
      actors: { ticker: fromCallback(() => () => {}) },
    }).createMachine({
      id: 'parent',
      context: ({ spawn }) => ({ ref: spawn('ticker', { id: 'child' }) }),
      initial: 'on',
      states: { on: {} },
    });
    const type = new ActorType('parent', machine);
    const actor = createActor(machine).start();
    const snapshot = actor.getSnapshot();
    const persisted = type.persist(snapshot) as { context: { ref: unknown }; children: Record<string, unknown> };
    expect(JSON.stringify(persisted)).to.equal(JSON.stringify(xstatePersisted(machine, snapshot)));
    expect(persisted.context.ref).to.have.property('xstate$$type');
    expect(Object.keys(persisted.children)).to.deep.equal(['child']);
    // Without its child, XState revives the reference to undefined; the shortcut would keep it.
    const orphan = { ...JSON.parse(JSON.stringify(persisted)), children: {} };
    for (let i = 0; i < 2; i++) expect(type.restore(JSON.parse(JSON.stringify(orphan))).context.ref).to.equal(undefined);
    actor.stop();
  });
});
