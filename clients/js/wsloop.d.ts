// clients/js/wsloop.d.ts: TypeScript declarations of wsloop.js.

export type Transport = "websocket" | "sse" | "poll";

export const TRANSPORTS: Transport[];

export interface Options {
  /** Transports to try, best first (default all three). */
  transports?: Transport[];
  /** Milliseconds a transport may take to show it works before the next is tried (5000). */
  openTimeout?: number;
  /** Full-jitter backoff: the first cap and the largest (500, 30000 ms). */
  backoffInitial?: number;
  backoffMax?: number;
  /** Milliseconds on a fallen-back transport before the best is tried again (60000). */
  upgradeAfter?: number;
  /** An access token, or a function returning a fresh one at every connection. */
  token?: string | null | (() => string | null | Promise<string | null>);
  /** Replace an expiring token (a JWT's exp) before it expires: in-band on WebSocket
   * (wsloop.positions.auth), by a resuming reconnection on SSE (default true). */
  refresh?: boolean;
  /** At most this many ms before exp (else a quarter of the token's lifetime) (30000). */
  refreshBefore?: number;
  /** Replacements for the browser's WebSocket, EventSource, fetch, timers, Math.random. */
  env?: Partial<{
    WebSocket: unknown;
    EventSource: unknown;
    fetch: typeof fetch;
    setTimeout: typeof setTimeout;
    clearTimeout: typeof clearTimeout;
    random: () => number;
  }>;
}

export interface MessageMeta {
  topic: string;
  /** The message's position (a decimal string), the same on every node. */
  position: string | null;
  transport: Transport;
}

export interface Published {
  topic: string;
  position: string | null;
}

export interface Events {
  state: { topic: string; state: "connecting" | "open" | "reconnecting"; transport: Transport };
  gap: { topic: string; after: string; resumedAt: string };
  transport: { topic: string; transport: Transport };
  /** A WebSocket the server (or the network) closed: its code and reason. */
  closed: { topic: string; code: number; reason: string; wasClean: boolean };
  error: { topic: string; error: unknown };
}

export class WsloopClient {
  constructor(baseUrl?: string, options?: Options);
  readonly transport: Transport | null;
  subscribe(
    topic: string,
    onMessage: (data: string, meta: MessageMeta) => void,
    options?: { since?: string | null },
  ): () => void;
  publish(topic: string, data: string): Promise<Published>;
  on<K extends keyof Events>(event: K, fn: (detail: Events[K]) => void): () => void;
  close(): void;
}

export function backoffDelay(
  attempt: number,
  options: { backoffInitial: number; backoffMax: number },
  random?: () => number,
): number;
export function hintFromReason(reason: string | null | undefined): number | null;
export function hintFromRetryAfter(value: string | null | undefined, now?: number): number | null;
/** A JWT's exp in ms since the epoch, or null. */
export function tokenExpiry(token: string | null | undefined): number | null;
/** Ms from `now` until a token expiring at `expMs` should be replaced, or null. */
export function refreshDelay(expMs: number | null, now: number, refreshBefore: number): number | null;
export function nextTransport(
  transports: Transport[],
  current: Transport,
  opened: boolean,
  failures: number,
): Transport;
