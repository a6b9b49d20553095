import { expect } from 'chai';
import { CommitSync } from '../../lib/cluster/commit-sync.js';
import { LocalEventBus, LocalEventHub } from '../../lib/eventbus/local.js';
import type { EventStored } from '../../lib/eventbus/eventbus.js';
import type { ShardMap } from '../../lib/cluster/shard-map.js';
import { Inbox, notification, uniqueNamespace } from '../contract/eventbus.contract.js';

const map = (owners: (string | null)[], epoch = 1): ShardMap => ({ epoch, shardCount: owners.length, owners, leader: 'a', time: 0, revision: epoch });

describe('CommitSync', () => {
  let ns: string;
  let publisher: LocalEventBus;
  let bus: LocalEventBus;
  let inbox: Inbox;
  let sync: CommitSync;

  beforeEach(() => {
    ns = uniqueNamespace('sync');
    const hub = new LocalEventHub();
    publisher = new LocalEventBus(ns, hub);
    bus = new LocalEventBus(ns, hub);
    inbox = new Inbox();
    sync = new CommitSync(bus, 'a', inbox.handler);
  });

  afterEach(async () => {
    sync.close();
    await Promise.all([publisher.close(), bus.close()]);
  });

  /** Publishes one notice per shard (and one without a shard), then a sentinel on `sentinelShard`; resolves with the shards heard. */
  async function heard(shards: number, sentinelShard: number): Promise<(number | undefined)[]> {
    inbox.received.length = 0;
    const sent: EventStored[] = [notification(ns)];
    for (let shard = 0; shard < shards; shard++) sent.push(notification(ns, { shard }));
    const sentinel = notification(ns, { shard: sentinelShard, id: 'sentinel' });
    for (const n of [...sent, sentinel]) publisher.publish(n);
    await inbox.receives(sentinel);
    return inbox.received.filter((n) => n !== sentinel).map((n) => n.shard);
  }

  /** A notice on `shard` reaches a subscriber of every shard on the same bus, and not the sync. */
  async function hearsNothingOn(shard: number): Promise<void> {
    const everyone = new Inbox();
    bus.subscribeToEventStored(everyone.handler);
    const sent = notification(ns, { shard });
    publisher.publish(sent);
    await everyone.receives(sent);
    expect(inbox.received).to.deep.equal([]);
  }

  it('hears nothing before it has a map', async () => {
    sync.follow(undefined);
    expect(sync.shards).to.deep.equal([]);
    await hearsNothingOn(0);
  });

  it('hears the commits of the shards the map gives its node, and of no other shard', async () => {
    sync.follow(map(['a', 'b', 'a', null, 'c', 'a']));
    expect(sync.shards).to.deep.equal([0, 2, 5]);
    expect(await heard(6, 5)).to.deep.equal([0, 2, 5]);
  });

  it('follows the map as shards move to and away from its node', async () => {
    sync.follow(map(['a', 'b', 'a', 'b']));
    sync.follow(map(['b', 'b', 'a', 'a'], 2));
    expect(sync.shards).to.deep.equal([2, 3]);
    expect(await heard(4, 3)).to.deep.equal([2, 3]);
    sync.follow(map(['b', 'b', 'b', 'b'], 3));
    expect(sync.shards).to.deep.equal([]);
  });

  it('listens anew when the shard count changes (every shard number means another set of actors)', async () => {
    sync.follow(map(['a', 'b']));
    sync.follow(map(['b', 'a', 'a', 'b', 'a', 'b', 'b', 'b'], 2));
    expect(sync.shards).to.deep.equal([1, 2, 4]);
    expect(await heard(8, 4)).to.deep.equal([1, 2, 4]);
  });

  it('hears nothing once closed', async () => {
    sync.follow(map(['a', 'a']));
    sync.close();
    expect(sync.shards).to.deep.equal([]);
    await hearsNothingOn(1);
  });
});
