// integrate turns rate series (points [unix, up, down], bytes/s) into the
// bytes they add up to, by the trapezoid rule between samples; a gap (a
// null sample) contributes nothing rather than a guess.
import type { S } from './api/types'

type Series = S<'Series'>

export function integrate(series: Series[]): number {
  let total = 0
  for (const s of series) {
    const pts = (s.points ?? []) as (number | null)[][]
    for (let i = 1; i < pts.length; i++) {
      const [t0, u0, d0] = pts[i - 1]
      const [t1, u1, d1] = pts[i]
      if (t0 == null || t1 == null || t1 <= t0) continue
      for (const [a, b] of [[u0, u1], [d0, d1]]) {
        if (a == null || b == null) continue
        total += ((a + b) / 2) * (t1 - t0)
      }
    }
  }
  return total
}
