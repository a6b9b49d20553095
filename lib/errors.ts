/**
 * Every error natstate raises on purpose is a `NatstateError` with a stable `code`,
 * so callers can branch on the class or the code and never parse messages.
 */
export class NatstateError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** An append found the stream at another version than the caller expected. Nothing was stored. */
export class ConcurrencyError extends NatstateError {
  constructor(
    readonly stream: string,
    readonly expectedVersion: number,
    readonly actualVersion: number,
  ) {
    super(
      'CONCURRENCY',
      `stream ${stream}: expected version ${expectedVersion} but it is at ${actualVersion}; nothing was stored`,
    );
  }
}

/** The actor id is empty, not a string, or longer than `MAX_ACTOR_ID_BYTES`. */
export class InvalidActorIdError extends NatstateError {
  constructor(readonly actorId: unknown, reason: string) {
    super('INVALID_ACTOR_ID', `invalid actor id: ${reason}`);
  }
}

/** A namespace, actor type name or subject prefix is empty, too long or not a string. */
export class InvalidNameError extends NatstateError {
  constructor(readonly kind: 'namespace' | 'actor type' | 'prefix' | 'shard', readonly value: unknown, reason: string) {
    super('INVALID_NAME', `invalid ${kind}: ${reason}`);
  }
}

/** The node hosts no actor type by this name. */
export class UnknownActorTypeError extends NatstateError {
  constructor(readonly actorType: string, readonly known: readonly string[]) {
    super('UNKNOWN_ACTOR_TYPE', `unknown actor type "${actorType}"; this node hosts: ${known.join(', ') || '(none)'}`);
  }
}

/** The command is not an event object, or names an event type the machine never handles. */
export class InvalidEventError extends NatstateError {
  constructor(readonly actorType: string, readonly event: unknown, reason: string) {
    super('INVALID_EVENT', `invalid event for actor type "${actorType}": ${reason}`);
  }
}

/** Bytes that do not decode to the expected message. Nothing derived from them was stored. */
export class DecodeError extends NatstateError {
  constructor(readonly what: string, reason: string, options?: { cause?: unknown }) {
    super('DECODE', `cannot decode ${what}: ${reason}`, options);
  }
}

/**
 * A value cannot be written to the wire: superjson refuses to walk an object with an own
 * `__proto__`, `constructor` or `prototype` key once the value also holds something plain
 * JSON cannot carry (a Date, Map, Set, BigInt, undefined, NaN). Nothing was sent or stored.
 */
export class EncodeError extends NatstateError {
  constructor(readonly what: string, reason: string, options?: { cause?: unknown }) {
    super('ENCODE', `cannot encode ${what}: ${reason}; nothing was sent or stored`, options);
  }
}

/** An encoded message would exceed the server's max_payload. Nothing was sent or stored. */
export class PayloadTooLargeError extends NatstateError {
  constructor(readonly what: string, readonly size: number, readonly limit: number) {
    super('PAYLOAD_TOO_LARGE', `${what} is ${size} bytes, over the limit of ${limit} bytes; nothing was stored`);
  }
}

/** An operation did not complete before its deadline. */
export class TimeoutError extends NatstateError {
  constructor(readonly operation: string, readonly timeoutMs: number, options?: { cause?: unknown }) {
    super('TIMEOUT', `${operation} timed out after ${timeoutMs} ms`, options);
  }
}

/** The node (or store, or bus) was closed; the operation was not performed. */
export class ClosedError extends NatstateError {
  constructor(what: string) {
    super('CLOSED', `${what} is closed`);
  }
}

/** The event store could not complete an operation (server error, lost connection). */
export class EventStoreError extends NatstateError {
  constructor(readonly stream: string, reason: string, options?: { cause?: unknown }) {
    super('EVENT_STORE', `event store, stream ${stream}: ${reason}`, options);
  }
}

/** The NATS server is missing a capability natstate needs (for example JetStream). */
export class ServerCapabilityError extends NatstateError {
  constructor(reason: string, options?: { cause?: unknown }) {
    super('SERVER_CAPABILITY', reason, options);
  }
}

/**
 * Routing gave up: until the deadline, every node asked answered that it does not own
 * the actor's shard (the cluster was still rebalancing), or no owner was known.
 */
export class NotOwnerError extends NatstateError {
  constructor(
    readonly actorType: string,
    readonly actorId: string,
    readonly epoch: number,
    readonly owner: string | null,
  ) {
    super('NOT_OWNER', `no owner of ${actorType}/${actorId} took the command (last answer: not owner at shard-map epoch ${epoch}, owner ${owner ?? 'unknown'})`);
  }
}

/** The actor's owner failed the command with an error this node has no class for. */
export class RemoteError extends NatstateError {
  constructor(
    readonly remoteCode: string,
    readonly remoteName: string,
    readonly nodeId: string,
    message: string,
  ) {
    super('REMOTE', `node ${nodeId} failed the command with ${remoteName}: ${message}`);
  }
}

/**
 * Hands an error nobody awaits (a failed notification, a throwing handler) to an
 * adapter's `onError`, wrapped with `what` happened when given. A reporter that throws
 * is ignored: it has nowhere left to report to, and adapters call this from inside the
 * NATS client's parser, where nothing may escape.
 */
export function reportError(onError: ((error: Error) => void) | undefined, error: unknown, what?: string): void {
  const cause = error instanceof Error ? error : new Error(`non-Error value thrown: ${String(error)}`, { cause: error });
  try {
    onError?.(what === undefined ? cause : new Error(`natstate: ${what}: ${cause.message}`, { cause }));
  } catch {
    // ignored, see above
  }
}

/**
 * Too many commands are waiting for an actor while its previous owner hands it over to
 * its new owner; this one was refused rather than queued without bound. Nothing was
 * stored; retry shortly.
 */
export class MigrationBufferFullError extends NatstateError {
  constructor(
    readonly actorType: string,
    readonly actorId: string,
    readonly limit: number,
  ) {
    super('MIGRATION_BUFFER_FULL', `${limit} commands already wait for ${actorType}/${actorId} to finish migrating; this one was not accepted, retry later`);
  }
}

/** A migration option (`cluster.migration`) that cannot be honoured; the node does not start. */
export class MigrationOptionError extends NatstateError {
  constructor(
    readonly option: string,
    readonly value: unknown,
    reason: string,
  ) {
    super('INVALID_MIGRATION_OPTION', `cluster.migration.${option} ${reason} (got ${String(value)})`);
  }
}

/**
 * natstate opened a NATS connection and no server took it: unreachable, a TLS handshake
 * that failed, a refused connection. `servers` never carry credentials.
 */
export class NatsConnectionError extends NatstateError {
  constructor(readonly servers: readonly string[], reason: string, options?: { cause?: unknown }) {
    super('NATS_CONNECTION', `cannot connect to NATS at ${servers.join(',')}: ${reason}`, options);
  }
}

/**
 * The NATS server refused the credentials natstate connected with (user and password,
 * token, nkey or creds). The connection was not retried.
 */
export class NatsAuthorizationError extends NatstateError {
  constructor(readonly servers: readonly string[], reason: string, options?: { cause?: unknown }) {
    super('NATS_AUTHORIZATION', `NATS authorization failed for ${servers.join(',')}: ${reason}`, options);
  }
}
