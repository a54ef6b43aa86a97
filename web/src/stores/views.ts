// The users page's column choice and saved views: per admin, in this
// browser's localStorage (they are preferences, not secrets; another
// browser starts from the defaults).
import type { UserQuery } from './users'

export const optionalColumns = ['status', 'used', 'expire', 'rate', 'devices', 'plan'] as const
export type Column = (typeof optionalColumns)[number]

export interface SavedView {
  name: string
  query: Omit<UserQuery, 'offset'>
  hidden: Column[]
}

function storage(): Storage | null {
  try {
    return window.localStorage
  } catch {
    return null
  }
}
const key = (admin: string, what: string) => `boxfleet.users.${what}.${admin}`

function read<T>(k: string, fallback: T, valid: (v: unknown) => boolean): T {
  try {
    const v = JSON.parse(storage()?.getItem(k) ?? 'null')
    return valid(v) ? (v as T) : fallback
  } catch {
    return fallback
  }
}

// The columns an admin hid (so that a column added later shows by default).
export function loadHidden(admin: string): Column[] {
  const h = read<unknown[]>(key(admin, 'hidden'), [], Array.isArray)
  return h.filter((c): c is Column => (optionalColumns as readonly unknown[]).includes(c))
}

export function saveHidden(admin: string, hidden: Column[]) {
  storage()?.setItem(key(admin, 'hidden'), JSON.stringify(hidden))
}

export function loadViews(admin: string): SavedView[] {
  const vs = read<unknown[]>(key(admin, 'views'), [], Array.isArray)
  return vs.filter((v): v is SavedView => !!v && typeof (v as SavedView).name === 'string' && typeof (v as SavedView).query === 'object')
    .map((v) => ({ ...v, hidden: Array.isArray(v.hidden) ? v.hidden : [] }))
}

// saveView adds a view, or replaces the one of the same name; the list
// stays sorted by name.
export function saveView(admin: string, v: SavedView): SavedView[] {
  const vs = loadViews(admin).filter((x) => x.name !== v.name)
  vs.push(v)
  vs.sort((a, b) => a.name.localeCompare(b.name))
  storage()?.setItem(key(admin, 'views'), JSON.stringify(vs))
  return vs
}

export function deleteView(admin: string, name: string): SavedView[] {
  const vs = loadViews(admin).filter((x) => x.name !== name)
  storage()?.setItem(key(admin, 'views'), JSON.stringify(vs))
  return vs
}
