// Review: the arguments a guest sends to a host function are the guest's text; the host must not
// trust its "u" (undefined indices) list: an index far past the arguments would make a sparse
// array of billions of elements that the host then spreads into the function's call.
import { describe, expect, it } from 'vitest';
import { decodeArgs } from '../../packages/js/src/values.js';

describe('review: decodeArgs bounds what the guest sends', () => {
  it('an undefined-index past the arguments does not grow them', () => {
    const a = decodeArgs('{"a":[1,2],"u":[4294967294]}');
    expect(a.length).toBe(2);
  });
  it('indices that are not whole numbers in range are ignored, the rest honoured', () => {
    expect(decodeArgs('{"a":[1,null,3],"u":[1,"length",-1,1.5]}')).toEqual([1, undefined, 3]);
  });
  it('a record that is not {a: [...], u: [...]} is an error, not a host crash', () => {
    expect(() => decodeArgs('{"a":5,"u":7}')).toThrow(TypeError);
  });
});
