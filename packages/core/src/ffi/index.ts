/** The FFI boundary of kvmpool: the rest of the code imports from here, never from koffi. */
export * from './kvm-abi.js';
export { KVM_IOCTLS, type IoctlName } from './ioctls.js';
export { errorFor, ioctlInt, ioctlPtr, kvmRun } from './kvm-call.js';
export { decodeCpuid, decodeMsrs, encodeCpuid, encodeMsrs, readCpuidList, readMsrIndexList } from './lists.js';
export { allocate, decode, encode, readAt, writeAt, zeroed, type Infer } from './layout.js';
export {
  MAP_FAILED, MAP_SHARED, O_CLOEXEC, O_RDWR, PROT_READ, PROT_WRITE, addressOf, errnoName, errnoText, lastErrno,
  sysClose, sysGetpid, sysGettid, sysMmap, sysMunmap, sysOpen, sysPthreadSigmask, sysSigtimedwait, sysTgkill, viewOf,
  SIG_BLOCK, SIG_SETMASK, SIG_UNBLOCK, CLOCK_MONOTONIC, SIGEV_THREAD_ID, sysTimerCreate, sysTimerDelete, sysTimerSettime,
  EFD_CLOEXEC, EFD_NONBLOCK, EFD_SEMAPHORE, sysEventfd, sysEventfdRead, sysEventfdWrite,
  POLLERR, POLLFD_SIZE, POLLHUP, POLLIN, POLLNVAL, sysPoll,
} from './libc.js';
