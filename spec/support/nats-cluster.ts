/**
 * A cluster of real nats-server processes with JetStream (three by default: JetStream
 * clustering needs a quorum), routed to each other on loopback ports. Each member is a
 * `NatsServer` (nats-server.ts) given `server_name` and a `cluster {}` block, so
 * `kill(i)` + `restart(i)` keep its client port, route port and store.
 */
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { NatsServer, freePort } from './nats-server.js';

export class NatsCluster {
  private constructor(readonly servers: readonly NatsServer[]) {}

  /** Starts `size` routed servers and resolves once JetStream answers through every one of them. */
  static async start(options: { size?: number; name?: string; timeoutMs?: number } = {}): Promise<NatsCluster> {
    const size = options.size ?? 3;
    const name = options.name ?? 'natstate-spec';
    const routePorts: number[] = [];
    while (routePorts.length < size) {
      const port = await freePort();
      if (!routePorts.includes(port)) routePorts.push(port);
    }
    const routes = routePorts.map((port) => `nats-route://127.0.0.1:${port}`).join(', ');
    const servers: NatsServer[] = [];
    try {
      for (let i = 0; i < size; i++) {
        const config = [`server_name: ${name}-${i}`, `cluster { name: ${name}, listen: 127.0.0.1:${routePorts[i]}, routes: [${routes}] }`].join('\n');
        servers.push(await NatsServer.start({ config }));
      }
      const cluster = new NatsCluster(servers);
      await cluster.ready(options.timeoutMs ?? 30_000);
      return cluster;
    } catch (error) {
      await Promise.all(servers.map((s) => s.stop()));
      throw error;
    }
  }

  /** Every server's client URL, for a connection that fails over between them. */
  get urls(): string[] {
    return this.servers.map((s) => s.url);
  }

  /** Combined output of every server, for failure messages. */
  get log(): string {
    return this.servers.map((s, i) => `--- server ${i}\n${s.log}`).join('\n');
  }

  /** Resolves once each running server answers a JetStream account request (a meta leader is elected). */
  async ready(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const server of this.servers.filter((s) => s.running)) {
      for (;;) {
        const nc = await connect({ servers: server.url, timeout: 2_000 }).catch(() => undefined);
        const ok = nc
          ? await jetstreamManager(nc, { timeout: 2_000 })
              .then((jsm) => jsm.getAccountInfo())
              .then(
                () => true,
                () => false,
              )
          : false;
        await nc?.close().catch(() => undefined);
        if (ok) break;
        if (Date.now() > deadline) throw new Error(`the NATS cluster has no JetStream after ${timeoutMs} ms:\n${this.log}`);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
  }

  /** SIGKILLs server `index`, keeping its ports and store for `restart(index)`. */
  kill(index: number): Promise<void> {
    return this.servers[index].kill('SIGKILL');
  }

  /** Starts server `index` again (stopping it first if it runs) with the same ports and store. */
  restart(index: number): Promise<void> {
    return this.servers[index].restart();
  }

  /** Stops every server and deletes their stores. */
  async stop(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.stop()));
  }
}
