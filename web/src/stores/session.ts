// Who is logged in. The session itself is an HttpOnly cookie the
// controller sets; the UI only knows the answer of GET /api/v1/session.
import { defineStore } from 'pinia'
import { api, ApiError, type Schemas } from '../api/client'

export type Whoami = Schemas['Whoami']

export const useSession = defineStore('session', {
  state: () => ({ me: null as Whoami | null, checked: false }),
  getters: {
    role: (s) => s.me?.role ?? '',
    isOwner: (s) => s.me?.role === 'owner',
    canEdit: (s) => s.me?.role === 'owner' || s.me?.role === 'operator' || s.me?.role === 'reseller',
    isStaff: (s) => s.me?.role === 'owner' || s.me?.role === 'operator' || s.me?.role === 'viewer',
  },
  actions: {
    async check() {
      try {
        this.me = await api.get<Whoami>('/api/v1/session')
      } catch (e) {
        if (!(e instanceof ApiError) || e.status !== 401) throw e
        this.me = null
      } finally {
        this.checked = true
      }
      return this.me
    },
    async login(name: string, password: string, totp?: string) {
      const body: Schemas['Login'] = { name, password }
      if (totp) body.totp = totp
      this.me = await api.post<Whoami>('/api/v1/session', body)
      this.checked = true
      return this.me
    },
    async logout() {
      try {
        await api.del('/api/v1/session')
      } finally {
        this.me = null
      }
    },
    expired() {
      this.me = null
    },
  },
})
