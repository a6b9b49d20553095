import { crashNode, createNode, type ActorTypes, type NatstateNode, type NodeOptions } from './node.js';
import { MemoryNetwork } from './memory-network.js';

export interface MemoryClusterOptions<A extends ActorTypes> extends Omit<NodeOptions<A>, 'nats' | 'network' | 'nodeId'> {
  /** Nodes to start with. */
  readonly nodes: number;
}

export interface MemoryCluster<A extends ActorTypes> {
  readonly network: MemoryNetwork;
  /** The nodes currently running, in the order they joined. */
  readonly nodes: readonly NatstateNode<A>[];
  /** Starts one more node on the same network (`node-<n>` unless named). */
  addNode(nodeId?: string): Promise<NatstateNode<A>>;
  /** Gracefully removes a node (its shards move to the others first). */
  removeNode(node: NatstateNode<A>): Promise<void>;
  /**
   * Stops a node as a crash would: nothing is handed off and its member record stays, so
   * the others take its shards over once its heartbeat is older than `failureTimeoutMs`,
   * and its actors recover from the store on their next command.
   */
  crashNode(node: NatstateNode<A>): Promise<void>;
  close(): Promise<void>;
}

/**
 * A whole cluster in one process on the embedded default: several nodes sharing one
 * in-memory network (store, bus, cluster bucket, transport). No infrastructure needed.
 */
export async function createMemoryCluster<const A extends ActorTypes>(options: MemoryClusterOptions<A>): Promise<MemoryCluster<A>> {
  const { nodes: count, ...nodeOptions } = options;
  const network = new MemoryNetwork();
  const nodes: NatstateNode<A>[] = [];
  let started = 0;
  const cluster: MemoryCluster<A> = {
    network,
    nodes,
    async addNode(nodeId = `node-${++started}`) {
      const node = await createNode({ ...nodeOptions, network, nodeId });
      nodes.push(node);
      return node;
    },
    async removeNode(node) {
      const at = nodes.indexOf(node);
      if (at >= 0) nodes.splice(at, 1);
      await node.leave();
    },
    async crashNode(node) {
      const at = nodes.indexOf(node);
      if (at >= 0) nodes.splice(at, 1);
      await crashNode(node);
    },
    async close() {
      await Promise.all(nodes.splice(0).map((n) => n.close()));
    },
  };
  // One at a time, so the first becomes leader and the others join its map.
  for (let i = 0; i < count; i++) await cluster.addNode();
  return cluster;
}
