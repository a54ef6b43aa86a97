// The ledger's usage rows (one per day and node) shaped for the user page:
// a table of days by nodes, and the stacked bars of its chart.

export type UsageRow = { node: string; day: number; upload_bytes: number; download_bytes: number }

// fmtDay turns the ledger's day number (20260131) into 2026-01-31.
export const fmtDay = (d: number) => `${String(d).slice(0, 4)}-${String(d).slice(4, 6)}-${String(d).slice(6, 8)}`

export interface Stacked {
  days: number[] // oldest first
  labels: string[] // the days as 2026-01-31
  nodes: string[] // sorted
  own: number[][] // own[node][day]: that node's bytes (up + down)
  stacked: number[][] // stacked[node][day]: the sum of nodes 0..node
}

export function stackDays(rows: UsageRow[]): Stacked {
  const days = [...new Set(rows.map((r) => r.day))].sort((a, b) => a - b)
  const nodes = [...new Set(rows.map((r) => r.node))].sort()
  const di = new Map(days.map((d, i) => [d, i]))
  const ni = new Map(nodes.map((n, i) => [n, i]))
  const own = nodes.map(() => days.map(() => 0))
  for (const r of rows) own[ni.get(r.node)!][di.get(r.day)!] += (r.upload_bytes ?? 0) + (r.download_bytes ?? 0)
  const stacked: number[][] = []
  own.forEach((row, i) => stacked.push(row.map((v, d) => v + (i > 0 ? stacked[i - 1][d] : 0))))
  return { days, labels: days.map(fmtDay), nodes, own, stacked }
}
