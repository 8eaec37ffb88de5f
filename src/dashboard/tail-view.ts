/**
 * The live tail: messages of the watched topic or pattern as they arrive, newest on top, the
 * newest KEPT kept. Paused, arrivals wait (as many as are kept) and show on resume.
 */
import type { TailMessage } from "./types.ts"

const KEPT = 200

export class TailView {
  readonly #list: HTMLOListElement
  readonly #status: HTMLElement
  readonly #pauseButton: HTMLButtonElement
  #paused = false
  #waiting: TailMessage[] = []
  #skipped = 0
  #watching: string | null = null

  constructor(list: HTMLOListElement, status: HTMLElement, pauseButton: HTMLButtonElement, clearButton: HTMLButtonElement) {
    this.#list = list
    this.#status = status
    this.#pauseButton = pauseButton
    pauseButton.setAttribute("aria-pressed", "false")
    pauseButton.addEventListener("click", () => this.#setPaused(!this.#paused))
    clearButton.addEventListener("click", () => {
      this.#list.replaceChildren()
      this.#waiting = []
      this.#skipped = 0
      this.#describe()
    })
  }

  watch(name: string | null): void {
    this.#watching = name
    this.#list.replaceChildren()
    this.#waiting = []
    this.#skipped = 0
    this.#describe()
  }

  refused(text: string): void {
    this.#watching = null
    this.#status.textContent = text
    this.#status.classList.add("error")
  }

  add(messages: readonly TailMessage[], skipped: number): void {
    this.#skipped += skipped
    if (this.#paused) {
      this.#waiting.push(...messages)
      if (this.#waiting.length > KEPT) {
        this.#skipped += this.#waiting.length - KEPT
        this.#waiting = this.#waiting.slice(-KEPT)
      }
    } else if (messages.length > 0) {
      this.#render(messages)
    }
    this.#describe()
  }

  #setPaused(paused: boolean): void {
    this.#paused = paused
    this.#pauseButton.setAttribute("aria-pressed", String(paused))
    this.#pauseButton.textContent = paused ? "Resume" : "Pause"
    if (!paused && this.#waiting.length > 0) {
      this.#render(this.#waiting)
      this.#waiting = []
    }
    this.#describe()
  }

  #render(messages: readonly TailMessage[]): void {
    const items = messages.slice(-KEPT).map(itemOf).reverse()
    this.#list.prepend(...items)
    while (this.#list.children.length > KEPT) this.#list.lastElementChild!.remove()
  }

  #describe(): void {
    this.#status.classList.remove("error")
    if (this.#watching === null) {
      this.#status.textContent = "Choose a topic or a pattern to watch its messages arrive."
      return
    }
    const parts = [`Watching ${this.#watching}: ${this.#list.children.length} shown`]
    if (this.#paused) parts.push(`paused, ${this.#waiting.length} waiting`)
    if (this.#skipped > 0) parts.push(`${this.#skipped} passed over (they came faster than the page shows)`)
    this.#status.textContent = parts.join("; ")
  }
}

function itemOf(message: TailMessage): HTMLLIElement {
  const item = document.createElement("li")
  item.className = "tail-message"
  item.dataset.topic = message.topic
  item.dataset.seq = String(message.seq)
  const meta = document.createElement("span")
  meta.className = "meta"
  const time = new Date(message.putAt).toLocaleTimeString([], { hour12: false })
  meta.textContent = `${time} ${message.topic} #${message.seq} (${message.bytes} B)`
  const payload = document.createElement("span")
  payload.className = message.hex === undefined ? "text" : "hex"
  const shown = message.text ?? message.hex ?? ""
  payload.textContent = message.truncated ? `${shown}…` : shown
  item.append(meta, payload)
  return item
}
