// Names for the generated schemas the pages use. A schema the backend has
// not published yet falls back to a loose record, so the UI keeps compiling
// while openapi.json grows; once it is there, the real type applies.
import type { Schemas } from './client'

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = Record<string, any>
export type S<K extends string> = K extends keyof Schemas ? Schemas[K] & Loose : Loose

export type User = S<'ListedUser'>
export type UserDetail = S<'UserWithWhy'>
export type UserPage = S<'UserPage'>
export type Node = S<'NodeView'>
export type NodeCreated = S<'NodeCreated'>
export type Plan = S<'Plan'>
export type Hook = S<'Hook'>
export type Delivery = S<'Delivery'>
export type Admin = S<'Admin'>
export type APIToken = S<'APIToken'>
export type Event = S<'Event'>
export type Overview = S<'Overview'>
export type Series = S<'SeriesAnswer'>
export type Live = S<'UserLive'>
export type TopUsers = S<'TopUsers'>
export type Timeline = S<'Timeline'>
export type BulkResult = S<'BulkResult'>
export type Usage = S<'Usage'>
export type AlertList = S<'AlertList'>
