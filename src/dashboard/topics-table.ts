/** The topic catalogue as a table: sorted by any column (click its header), filtered by a substring of the name. */
import { formatAgo, formatBytes, formatCount, formatRate, tableRow } from "./format.ts"
import type { TopicRow } from "./types.ts"

type SortKey = keyof TopicRow

export class TopicsTable {
  readonly #table: HTMLTableElement
  readonly #count: HTMLElement
  #rows: readonly TopicRow[] = []
  #total = 0
  #nowMs = Date.now()
  #filter = ""
  #sortKey: SortKey = "lastPutAt"
  #descending = true

  constructor(table: HTMLTableElement, filter: HTMLInputElement, count: HTMLElement) {
    this.#table = table
    this.#count = count
    filter.addEventListener("input", () => {
      this.#filter = filter.value.trim().toLowerCase()
      this.#render()
    })
    for (const header of table.querySelectorAll<HTMLTableCellElement>("th[data-key]")) {
      header.addEventListener("click", () => {
        const key = header.dataset.key as SortKey
        // A second click on the same column turns the order round; text sorts A→Z first, numbers largest first.
        this.#descending = key === this.#sortKey ? !this.#descending : header.dataset.type !== "text"
        this.#sortKey = key
        this.#render()
      })
    }
  }

  show(rows: readonly TopicRow[], total: number, nowMs: number): void {
    this.#rows = rows
    this.#total = total
    this.#nowMs = nowMs
    this.#render()
  }

  #render(): void {
    const shown = this.#rows.filter((row) => row.topic.toLowerCase().includes(this.#filter))
    const key = this.#sortKey
    const sign = this.#descending ? -1 : 1
    shown.sort((a, b) => sign * compare(a[key], b[key]))
    for (const header of this.#table.querySelectorAll<HTMLTableCellElement>("th[data-key]")) {
      if (header.dataset.key === key) header.setAttribute("aria-sort", this.#descending ? "descending" : "ascending")
      else header.removeAttribute("aria-sort")
    }
    const body = this.#table.tBodies[0]!
    body.replaceChildren(...shown.map((row) => this.#rowElement(row)))
    const listed = this.#rows.length < this.#total ? ` (the ${this.#rows.length} most recent listed)` : ""
    this.#count.textContent = `${shown.length} shown of ${formatCount(this.#total)}${listed}`
  }

  #rowElement(row: TopicRow): HTMLTableRowElement {
    const tr = tableRow([
      [row.topic, false],
      [formatCount(row.messages), true],
      [formatBytes(row.bytes), true],
      [formatRate(row.perSecond), true],
      [formatCount(row.subscribers), true],
      [formatAgo(row.lastPutAt, this.#nowMs), true],
    ])
    tr.dataset.topic = row.topic
    return tr
  }
}

function compare(a: TopicRow[SortKey], b: TopicRow[SortKey]): number {
  if (a === b) return 0
  if (a === null) return -1
  if (b === null) return 1
  return a < b ? -1 : 1
}
