import { describe, expect, test } from 'vitest'
import { fmtDay, stackDays } from '../src/usage'

describe('usage per day', () => {
  test('stacks each day by node, oldest day first, nodes sorted', () => {
    const s = stackDays([
      { node: 'b', day: 20260102, upload_bytes: 1, download_bytes: 2 },
      { node: 'a', day: 20260102, upload_bytes: 10, download_bytes: 0 },
      { node: 'a', day: 20260101, upload_bytes: 5, download_bytes: 5 },
      { node: 'a', day: 20260101, upload_bytes: 1, download_bytes: 0 }, // a second row for the same day adds up
    ])
    expect(s.labels).toEqual(['2026-01-01', '2026-01-02'])
    expect(s.nodes).toEqual(['a', 'b'])
    expect(s.own).toEqual([[11, 10], [0, 3]])
    // b's bar stands on a's: its top is the day's total
    expect(s.stacked).toEqual([[11, 10], [11, 13]])
  })
  test('no rows, no bars', () => {
    const s = stackDays([])
    expect(s.days).toEqual([])
    expect(s.stacked).toEqual([])
  })
  test('day numbers read as dates', () => {
    expect(fmtDay(20261231)).toBe('2026-12-31')
  })
})
