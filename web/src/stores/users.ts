// The users list: its query lives in the store (and the URL), so that
// going to a user and back keeps the page, sort and filter.
import { defineStore } from 'pinia'
import { api, type Query } from '../api/client'
import type { User, UserPage } from '../api/types'

export interface UserQuery {
  status: string
  plan: string
  group: string
  search: string
  filter: string[] // over90, expiring3d, overdevices
  sort: string
  limit: number
  offset: number
}

export const pageSizes = [20, 50, 100, 200, 500]

export function toParams(q: UserQuery): Query {
  return {
    status: q.status, plan: q.plan, group: q.group, search: q.search,
    filter: q.filter.join(','), sort: q.sort, limit: q.limit, offset: q.offset,
  }
}

// The filter part alone, for bulk actions on everything matching it.
export function toBulkFilter(q: UserQuery): Record<string, string> {
  const f: Record<string, string> = {}
  if (q.status) f.status = q.status
  if (q.plan) f.plan = q.plan
  if (q.group) f.group = q.group
  if (q.search) f.search = q.search
  if (q.filter.length) f.filter = q.filter.join(',')
  return f
}

export const useUsers = defineStore('users', {
  state: () => ({
    query: { status: '', plan: '', group: '', search: '', filter: [], sort: 'name', limit: 50, offset: 0 } as UserQuery,
    users: [] as User[],
    total: 0,
    live: true,
    loading: false,
    error: '',
    loadedMs: 0, // how long the last page took, shown and measured by the browser test
  }),
  actions: {
    async load() {
      this.loading = true
      const t0 = performance.now()
      try {
        const page = await api.get<UserPage>('/api/v1/users', toParams(this.query))
        this.users = page.users ?? []
        this.total = page.total ?? 0
        this.live = page.live !== false
        this.error = ''
      } catch (e) {
        this.error = (e as Error).message
      } finally {
        this.loading = false
        this.loadedMs = performance.now() - t0
      }
    },
    setQuery(patch: Partial<UserQuery>) {
      // Any change but paging goes back to the first page.
      const paging = Object.keys(patch).every((k) => k === 'offset')
      Object.assign(this.query, patch)
      if (!paging) this.query.offset = 0
    },
  },
})
