import { expect } from 'chai';
import { check, type LiveAccount, type RawCommit } from '../../chaos/checker.js';
import type { CommandRecord, Outcome } from '../../chaos/load.js';

const command = (n: number, account: string, amount: number, outcome: Outcome, version?: number): CommandRecord => ({
  commandId: `c${n}`,
  account,
  amount,
  outcome,
  version,
  attempts: 1,
});

/** One commit per event, versions 1..n, each DEPOSIT carrying the amount of the command it names. */
function history(account: string, deposits: readonly [commandId: string, amount: number][], from = 1): RawCommit[] {
  return deposits.map(([commandId, amount], i) => ({ seq: 100 + from + i, version: from + i, commandIds: [commandId], events: [{ type: 'DEPOSIT', amount }] }));
}

const live = (entries: Record<string, LiveAccount>) => new Map(Object.entries(entries));

describe('chaos checker', () => {
  const commands = [command(1, 'a', 10, 'acknowledged', 1), command(2, 'a', 5, 'acknowledged', 2), command(3, 'b', 7, 'acknowledged', 1)];
  const clean = new Map([
    ['a', history('a', [['c1', 10], ['c2', 5]])],
    ['b', history('b', [['c3', 7]])],
  ]);
  const truth = live({ a: { balance: 15, version: 2 }, b: { balance: 7, version: 1 } });

  it('finds nothing wrong in a history that holds every acknowledged command once', () => {
    const findings = check(commands, clean, truth);
    expect(findings).to.include({ lost: 0, duplicated: 0, gaps: 0, divergent: 0, balanceMismatches: 0, unanswered: 0, storedEvents: 3 });
    expect(findings.details).to.deep.equal([]);
  });

  it('counts a group commit of several events as consecutive versions', () => {
    const grouped = new Map([
      ['a', [{ seq: 7, version: 2, commandIds: ['c1', 'c2'], events: [{ type: 'DEPOSIT', amount: 10 }, { type: 'DEPOSIT', amount: 5 }] }]],
      ['b', clean.get('b')!],
    ]);
    expect(check(commands, grouped, truth)).to.include({ lost: 0, gaps: 0, divergent: 0, balanceMismatches: 0 });
  });

  it('reports an acknowledged command missing from the stream as lost, and the balance below the acknowledged deposits', () => {
    const withoutC2 = new Map([...clean, ['a', history('a', [['c1', 10]])]]);
    const findings = check(commands, withoutC2, live({ a: { balance: 10, version: 1 }, b: { balance: 7, version: 1 } }));
    expect(findings).to.include({ lost: 1, balanceMismatches: 1, divergent: 0 });
    expect(findings.details.join('\n')).to.match(/lost: c2/);
  });

  it('reports a command id stored twice as duplicated', () => {
    const twice = new Map([...clean, ['a', history('a', [['c1', 10], ['c2', 5], ['c2', 5]])]]);
    const findings = check(commands, twice, live({ a: { balance: 20, version: 3 }, b: { balance: 7, version: 1 } }));
    expect(findings.duplicated).to.equal(1);
  });

  it('reports missing versions as gaps', () => {
    const gapped = new Map([...clean, ['a', [...history('a', [['c1', 10]]), ...history('a', [['c2', 5]], 4)]]]);
    const findings = check([commands[0], command(2, 'a', 5, 'acknowledged', 4), commands[2]], gapped, live({ a: { balance: 15, version: 4 }, b: { balance: 7, version: 1 } }));
    expect(findings.gaps).to.equal(2);
  });

  it('reports two events at one version, an acknowledged version the stream contradicts and a live version behind the stream as divergent', () => {
    const forked = new Map([...clean, ['a', [...history('a', [['c1', 10], ['c2', 5]]), ...history('a', [['c9', 1]], 2)]]]);
    const findings = check([...commands, command(9, 'a', 1, 'errored')], forked, live({ a: { balance: 16, version: 2 }, b: { balance: 7, version: 1 } }));
    // c9 is a second event at version 2:
    expect(findings.divergent).to.equal(1);
    const misreported = check([command(1, 'a', 10, 'acknowledged', 1), command(2, 'a', 5, 'acknowledged', 7), commands[2]], clean, truth);
    expect(misreported.divergent).to.equal(1);
    const behind = check(commands, clean, live({ a: { balance: 15, version: 1 }, b: { balance: 7, version: 1 } }));
    expect(behind.divergent).to.equal(1);
  });

  it('reports a stored event that is not the command sent, and a deposit answered "not accepted", as divergent', () => {
    const altered = new Map([...clean, ['b', history('b', [['c3', 8]])]]);
    expect(check(commands, altered, live({ a: { balance: 15, version: 2 }, b: { balance: 8, version: 1 } })).divergent).to.equal(1);
    expect(check([...commands, command(4, 'b', 3, 'rejected', 1)], clean, truth).divergent).to.equal(1);
  });

  it('counts a command without a reply that is in the stream as applied, not lost, and its deposit in the balance', () => {
    const withC4 = new Map([...clean, ['b', history('b', [['c3', 7], ['c4', 3]])]]);
    const findings = check([...commands, command(4, 'b', 3, 'errored')], withC4, live({ a: { balance: 15, version: 2 }, b: { balance: 10, version: 2 } }));
    expect(findings).to.include({ lost: 0, balanceMismatches: 0, divergent: 0, appliedWithoutReply: 1 });
  });

  it('reports a live balance that is not the stream\'s, and an account the live cluster did not answer for, as balance mismatches', () => {
    expect(check(commands, clean, live({ a: { balance: 14, version: 2 }, b: { balance: 7, version: 1 } })).balanceMismatches).to.equal(1);
    expect(check(commands, clean, live({ a: { error: 'TimeoutError' }, b: { balance: 7, version: 1 } })).balanceMismatches).to.equal(1);
  });

  it('counts unanswered commands', () => {
    const findings = check([...commands, command(5, 'b', 2, 'unanswered')], clean, truth);
    expect(findings.unanswered).to.equal(1);
    expect(findings.lost).to.equal(0);
  });
});
