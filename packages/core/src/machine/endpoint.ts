/** A comlink endpoint over a Node MessagePort / Worker (comlink's ESM build ships none). */
import type { Endpoint } from 'comlink';

type Listener = Parameters<Endpoint['addEventListener']>[1];
type TransferList = Parameters<Endpoint['postMessage']>[1];
type MessageEventLike = Parameters<Extract<Listener, (...args: never[]) => unknown>>[0];

interface NodePort {
  postMessage(message: unknown, transfer?: TransferList): void;
  on(event: 'message', listener: (data: unknown) => void): unknown;
  off(event: 'message', listener: (data: unknown) => void): unknown;
}

export function nodeEndpoint(port: NodePort): Endpoint {
  const wrappers = new WeakMap<object, (data: unknown) => void>();
  return {
    postMessage: (message: unknown, transfer?: TransferList) => port.postMessage(message, transfer),
    addEventListener: (_type: string, listener: Listener) => {
      const wrapped = (data: unknown): void => {
        const event = { data } as MessageEventLike;
        if (typeof listener === 'function') listener(event);
        else listener.handleEvent(event);
      };
      wrappers.set(listener, wrapped);
      port.on('message', wrapped);
    },
    removeEventListener: (_type: string, listener: Listener) => {
      const wrapped = wrappers.get(listener);
      if (wrapped) port.off('message', wrapped);
    },
  };
}
