import { expect } from 'chai';
import type { ConnectionOptions, NatsConnection } from '@nats-io/nats-core';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { NatsKV, type NatsKVOptions } from '../../../lib/cluster/kv/nats.js';
import { Subjects } from '../../../lib/subjects.js';
import { bytes, clusterKvContract, text, Watcher } from '../../contract/cluster-kv.contract.js';
import { NatsServer } from '../../support/nats-server.js';

let counter = 0;
function uniqueNamespace(label: string): string {
  counter += 1;
  return `${label}-${process.pid}-${counter}`;
}

/** Retries `write` until the server takes it (it is reconnecting), with a deadline. */
async function eventually<T>(write: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await write();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

describe('NatsKV', function () {
  this.timeout(20_000);
  let server: NatsServer;
  const connections: NatsConnection[] = [];
  const handles: NatsKV[] = [];

  async function connection(options: Omit<ConnectionOptions, 'servers'> = {}): Promise<NatsConnection> {
    const nc = await connect({ ...options, servers: server.url });
    connections.push(nc);
    return nc;
  }

  async function open(nc: NatsConnection, options: NatsKVOptions): Promise<NatsKV> {
    const kv = await NatsKV.create(nc, options);
    handles.push(kv);
    return kv;
  }

  async function closeAll(): Promise<void> {
    await Promise.all(handles.splice(0).map((kv) => kv.close()));
    await Promise.all(connections.splice(0).map((nc) => nc.close()));
  }

  before(async () => {
    server = await NatsServer.start();
  });

  after(async () => {
    await closeAll();
    await server?.stop();
  });

  // A fresh bucket per spec; each handle is a node with its own connection.
  clusterKvContract('NatsKV', async () => {
    const namespace = uniqueNamespace('kv');
    return {
      kv: async () => open(await connection(), { namespace }),
      close: closeAll,
    };
  });

  describe('on a real nats-server', () => {
    afterEach(closeAll);

    it('keeps the data in the namespace’s cluster bucket and apart from other namespaces', async () => {
      const nc = await connection();
      const [a, b] = [uniqueNamespace('iso-a'), uniqueNamespace('iso-b')];
      const kvA = await open(nc, { namespace: a });
      const kvB = await open(nc, { namespace: b });
      const watcherB = new Watcher();
      await kvB.watch('', watcherB.handler);
      await kvA.put('leader', bytes('node-a'));
      expect(await kvB.get('leader')).to.equal(undefined);
      await kvB.create('leader', bytes('node-b'));
      expect(text((await kvA.get('leader'))?.value)).to.equal('node-a');
      await watcherB.until((seen) => seen.length > 0, 'the write of namespace b');
      expect(watcherB.seen.map((c) => c.value)).to.deep.equal(['node-b']);

      // The bucket is the one `Subjects` names, reachable by any KV client.
      const raw = await new Kvm(nc).open(new Subjects(a).clusterBucket);
      expect((await raw.get('leader'))?.string()).to.equal('node-a');
      expect((await raw.status()).history).to.equal(1);
    });

    it('opens the bucket another node created, and sees its values', async () => {
      const namespace = uniqueNamespace('reopen');
      const first = await open(await connection(), { namespace });
      const revision = await first.put('shardmap', bytes('epoch-3'));
      const second = await open(await connection(), { namespace });
      expect(await second.get('shardmap')).to.deep.include({ key: 'shardmap', revision });
    });

    it('keeps a watch through a nats-server restart and delivers the writes made after it', async () => {
      const namespace = uniqueNamespace('restart');
      const reconnect: Omit<ConnectionOptions, 'servers'> = { reconnectTimeWait: 50, maxReconnectAttempts: -1 };
      const watching = await open(await connection(reconnect), { namespace });
      // A write sent while JetStream recovers its streams is lost: time out early and retry.
      const writer = await open(await connection(reconnect), { namespace, timeoutMs: 500 });
      const watcher = new Watcher();
      await watching.watch('members.', watcher.handler);
      const before = await writer.put('members.a', bytes('before'));
      await watcher.sees(before);

      await server.kill();
      await server.restart();

      // A put whose ack was lost to the restart may be stored twice: both are changes to see.
      const after = await eventually(() => writer.put('members.a', bytes('after')));
      await watcher.sees(after);
      expect(watcher.seen[0]).to.deep.equal({ key: 'members.a', value: 'before', revision: before });
      expect(watcher.seen.at(-1)).to.deep.equal({ key: 'members.a', value: 'after', revision: after });
      const revisions = watcher.seen.map((c) => c.revision);
      expect(revisions).to.deep.equal([...new Set(revisions)].sort((x, y) => x - y));
    });

    it('fails with ClosedError once the connection it was given is closed', async () => {
      const namespace = uniqueNamespace('nc-closed');
      const nc = await connection();
      const kv = await open(nc, { namespace });
      const watcher = new Watcher();
      await kv.watch('leader', watcher.handler);
      await nc.close();
      const error = await kv.put('leader', bytes('x')).catch((e: unknown) => e);
      expect(error).to.have.property('code', 'CLOSED');
    });

    it('rejects bad options before touching the server', async () => {
      const nc = await connection();
      for (const options of [{ replicas: 0 }, { replicas: 1.5 }, { timeoutMs: 0 }]) {
        const error = await NatsKV.create(nc, { namespace: 'ok', ...options }).catch((e: unknown) => e);
        expect(error).to.be.instanceOf(RangeError);
      }
      const bad = await NatsKV.create(nc, { namespace: '' }).catch((e: unknown) => e);
      expect(bad).to.have.property('code', 'INVALID_NAME');
    });
  });
});
