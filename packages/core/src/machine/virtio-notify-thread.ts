/**
 * The queue-notify watcher thread (one per machine with virtio devices; `virtio-notify.ts` starts it).
 * It blocks in poll(2) on the queues' ioeventfds and one stop eventfd, and for each eventfd that
 * became readable it resets the counter and raises that queue's flag word, then bumps SEQ and
 * notifies it: the main thread, waiting on SEQ with Atomics.waitAsync, processes the flagged queues.
 * It touches no device state: only its eventfds and the shared words.
 *
 * With a dispatcher doorbell it rings that too (the dispatcher serves the flags in its loop, after its
 * rings; its spin sees a raised flag at once): the same argument holds with the doorbell's counter in
 * place of SEQ, since the dispatcher looks at the flags after it loads the counter it sleeps on.
 *
 * Memory ordering: flag store (Atomics.store, seq-cst) → Atomics.add(SEQ) → Atomics.notify(SEQ). The
 * main thread loads SEQ, then exchanges every flag to 0, then waits on SEQ with the value it loaded: a
 * flag raised after its exchange is followed by a SEQ bump after its load, so its wait returns at once
 * (or is woken); a flag is never left raised with the main thread asleep. The eventfd read comes before
 * the flag store, so a guest notify after the read makes the eventfd readable again (another round).
 */
import { workerData } from 'node:worker_threads';
import { POLLERR, POLLFD_SIZE, POLLHUP, POLLIN, POLLNVAL, lastErrno, sysEventfdRead, sysPoll } from '../ffi/index.js';
import { NOTIFY_WORD, type NotifyThreadInit } from './virtio-notify-words.js';

const EINTR = 4;
const init = workerData as NotifyThreadInit;
const words = new Int32Array(init.state);
const fds = [...init.queueFds, init.stopFd];
const table = new Uint8Array(POLLFD_SIZE * fds.length);
const dv = new DataView(table.buffer);
fds.forEach((fd, i) => {
  dv.setInt32(i * POLLFD_SIZE, fd, true);
  dv.setInt16(i * POLLFD_SIZE + 4, POLLIN, true);
});
const stopIndex = fds.length - 1;
const bell = init.doorbell ? new Int32Array(init.doorbell) : undefined;
const bellIndex = init.doorbellIndex ?? 0;

function run(): number {
  for (;;) {
    for (let i = 0; i < fds.length; i++) dv.setInt16(i * POLLFD_SIZE + 6, 0, true);
    const ready = sysPoll(table, fds.length, -1);
    if (ready < 0) {
      const errno = lastErrno();
      if (errno === EINTR) continue;
      return errno;
    }
    let raised = false;
    for (let i = 0; i < fds.length; i++) {
      const revents = dv.getInt16(i * POLLFD_SIZE + 6, true);
      if (revents === 0) continue;
      if (i === stopIndex) return 0;
      if (revents & (POLLERR | POLLHUP | POLLNVAL)) return -revents;
      // Non-blocking eventfd: reads and resets the counter (EAGAIN if another reader took it: harmless).
      sysEventfdRead(fds[i]!);
      Atomics.store(words, NOTIFY_WORD.FLAGS + i, 1);
      raised = true;
    }
    if (raised) {
      Atomics.add(words, NOTIFY_WORD.SEQ, 1);
      Atomics.notify(words, NOTIFY_WORD.SEQ);
      // The dispatcher serves the flags in its loop (spinning, dozing or asleep on this counter).
      if (bell) {
        Atomics.add(bell, bellIndex, 1);
        Atomics.notify(bell, bellIndex);
      }
    }
  }
}

// ERROR: 0 after a stop request, else the errno of a failed poll or minus the revents of a broken fd.
Atomics.store(words, NOTIFY_WORD.ERROR, run());
Atomics.store(words, NOTIFY_WORD.ENDED, 1);
Atomics.add(words, NOTIFY_WORD.SEQ, 1);
Atomics.notify(words, NOTIFY_WORD.SEQ);
