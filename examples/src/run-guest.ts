/** A minimal run loop for the examples: serial output on 0x3f8, exit on HLT or port 0x501. */
import { describeExit, type Vcpu } from '@kvmpool/core';
import { EXIT_PORT, SERIAL_PORT } from './guests.js';

export interface GuestResult {
  output: string;
  /** How the guest stopped: 'hlt', 'exit-port', or the exit that ended it. */
  stop: string;
  exits: number;
}

export function runToCompletion(vcpu: Vcpu, maxExits = 10_000): GuestResult {
  let output = '';
  for (let exits = 1; exits <= maxExits; exits++) {
    const exit = vcpu.run();
    if (exit.kind === 'io' && exit.direction === 'out' && exit.port === SERIAL_PORT) {
      output += Buffer.from(exit.data).toString('latin1');
      continue;
    }
    if (exit.kind === 'io' && exit.direction === 'out' && exit.port === EXIT_PORT) return { output, stop: 'exit-port', exits };
    if (exit.kind === 'hlt') return { output, stop: 'hlt', exits };
    return { output, stop: describeExit(exit), exits };
  }
  return { output, stop: `no stop after ${maxExits} exits`, exits: maxExits };
}
