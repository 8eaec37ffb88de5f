/** Puts/s and deliveries/s over the last minutes, as a uPlot line chart that follows its box's width. */
// Vendored (src/dashboard/vendor/uplot/README.md): the page works on a fresh clone, offline.
import uPlot from "./vendor/uplot/uPlot.esm.js"
import "./vendor/uplot/uPlot.min.css"
import type { RatePoint } from "./types.ts"

/** Points kept: five minutes of one-second samples, as the server keeps. */
const MAX_POINTS = 300
const HEIGHT = 220

export class RateChart {
  readonly #box: HTMLElement
  readonly #plot: uPlot
  readonly #times: number[] = []
  readonly #puts: number[] = []
  readonly #deliveries: number[] = []

  constructor(box: HTMLElement) {
    this.#box = box
    const styles = getComputedStyle(document.documentElement)
    const options: uPlot.Options = {
      width: this.#width(),
      height: HEIGHT,
      scales: { x: { time: true } },
      axes: [{ stroke: styles.getPropertyValue("--muted") }, { stroke: styles.getPropertyValue("--muted"), size: 60 }],
      series: [{}, { label: "puts/s", stroke: "#2563eb", width: 2 }, { label: "deliveries/s", stroke: "#16a34a", width: 2 }],
    }
    this.#plot = new uPlot(options, [[], [], []], box)
    new ResizeObserver(() => this.#plot.setSize({ width: this.#width(), height: HEIGHT })).observe(box)
  }

  /** Replaces what the chart shows (a new connection's history). */
  reset(points: readonly RatePoint[]): void {
    this.#times.length = 0
    this.#puts.length = 0
    this.#deliveries.length = 0
    for (const point of points) this.#push(point)
    this.#draw()
  }

  /** Adds the newest point, if it is new (updates come faster than samples). */
  add(point: RatePoint): void {
    const last = this.#times[this.#times.length - 1]
    if (last !== undefined && point.atMs / 1000 <= last) return
    this.#push(point)
    this.#draw()
  }

  #push(point: RatePoint): void {
    this.#times.push(point.atMs / 1000)
    this.#puts.push(point.putsPerSecond)
    this.#deliveries.push(point.deliveriesPerSecond)
    if (this.#times.length > MAX_POINTS) {
      this.#times.shift()
      this.#puts.shift()
      this.#deliveries.shift()
    }
  }

  #draw(): void {
    this.#plot.setData([this.#times, this.#puts, this.#deliveries])
    // A lone first point gets the minute before it, rather than a range of years.
    if (this.#times.length === 1) this.#plot.setScale("x", { min: this.#times[0]! - 60, max: this.#times[0]! })
    // For a glance (and the browser tests): how many points, and the newest put rate.
    this.#box.dataset.points = String(this.#times.length)
    this.#box.dataset.lastPuts = String(this.#puts[this.#puts.length - 1] ?? 0)
  }

  #width(): number {
    return Math.max(200, this.#box.clientWidth)
  }
}
