import { expect } from 'chai';
import { UsageError, eventArgument, integer, natsServers, parse } from '../../lib/cli/args.js';

const OPTIONS = { namespace: { type: 'string' }, json: { type: 'boolean' } } as const;

describe('cli arguments', () => {
  it('parses options and positionals, and --help whatever else is missing', () => {
    const { values, positionals } = parse('history', ['--namespace', 'bank', 'account', 'acc-1', '--json'], OPTIONS, { min: 2, max: 2, names: 'TYPE ID' });
    expect(values).to.deep.include({ namespace: 'bank', json: true });
    expect(positionals).to.deep.equal(['account', 'acc-1']);
    expect(parse('history', ['--help'], OPTIONS, { min: 2, max: 2, names: 'TYPE ID' }).values.help).to.equal(true);
  });

  it('turns every mistake into a UsageError (exit code 2) that names the command and what is wrong', () => {
    const spec = { min: 2, max: 2, names: 'TYPE ID' };
    const mistake = (fn: () => unknown) => {
      try {
        fn();
      } catch (error) {
        expect(error).to.be.instanceOf(UsageError);
        expect((error as UsageError).exitCode).to.equal(2);
        return (error as UsageError).message;
      }
      throw new Error('expected a UsageError');
    };
    expect(mistake(() => parse('history', ['--nope', 'a', 'b'], OPTIONS, spec))).to.equal('history: unknown option --nope (see natstate history --help)');
    expect(mistake(() => parse('history', ['a', 'b', '--namespace'], OPTIONS, spec))).to.match(/^history: option --namespace needs a value/);
    expect(mistake(() => parse('history', ['a'], OPTIONS, spec))).to.equal('history: expected TYPE ID (see natstate history --help)');
    expect(mistake(() => parse('history', ['a', 'b', 'c'], OPTIONS, spec))).to.match(/^history: unexpected argument "c"/);
    expect(mistake(() => integer('demo', 'actors', 'ten', 1_000))).to.equal('demo: --actors must be a whole number of at least 1, got "ten"');
    expect(mistake(() => integer('demo', 'shards', '0', 64, 4, 100))).to.equal('demo: --shards must be a whole number from 4 to 100, got "0"');
    expect(mistake(() => natsServers('status', 'http://example.com'))).to.match(/"http:\/\/example.com" is not a NATS URL/);
    expect(mistake(() => eventArgument('send', '{"amount":1}'))).to.match(/must be a JSON object with a string "type"/);
    expect(mistake(() => eventArgument('send', '{oops'))).to.match(/^send: the event is not valid JSON/);
  });

  it('reads numbers, server lists and events', () => {
    expect(integer('demo', 'actors', undefined, 1_000)).to.equal(1_000);
    expect(integer('demo', 'actors', '250', 1_000)).to.equal(250);
    expect(natsServers('node', 'nats://a:4222, b:4223')).to.deep.equal(['nats://a:4222', 'b:4223']);
    expect(eventArgument('send', '{"type":"DEPOSIT","amount":10}')).to.deep.equal({ type: 'DEPOSIT', amount: 10 });
  });
});
