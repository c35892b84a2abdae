/** The words the queue-notify watcher thread and the main thread share (virtio-notify.ts). */

/**
 * Word indices in the watcher's Int32Array: SEQ (bumped after flags are raised), ENDED (the thread
 * left its loop), ERROR (why), then one FLAGS word per queue eventfd (1: notified since last taken).
 * @enum
 */
export const NOTIFY_WORD = { SEQ: 0, ENDED: 1, ERROR: 2, FLAGS: 3 } as const;

/** What the watcher thread gets as workerData. */
export interface NotifyThreadInit {
  /** The queues' eventfds (KVM_IOEVENTFD signals them), in flag order. */
  queueFds: number[];
  /** The eventfd the main thread writes to end the thread. */
  stopFd: number;
  /** NOTIFY_WORD.FLAGS + queueFds.length words. */
  state: SharedArrayBuffer;
  /** A dispatcher's doorbell to ring (bump and notify word `doorbellIndex`) after raising flags, if any. */
  doorbell?: SharedArrayBuffer;
  /** The doorbell's counter word (`DOORBELL.COUNT`). */
  doorbellIndex?: number;
}
