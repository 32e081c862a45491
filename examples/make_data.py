#!/usr/bin/env python3
"""Writes the example datasets in examples/data/ (deterministic: run it again
and the files come out the same). Python 3, standard library only.

- sine.csv: y = sin(x) at 201 evenly spaced x in [-pi, pi]: a curve no
  linear network can follow.
- warm.csv: is a day warm? 120 days' temperature in celsius and a 0/1 label,
  warm = 1 above about 20 °C with a few days on the "wrong" side near it
  (people disagree there): a small binary classification.
- wind_chill.csv: two inputs, the air temperature in celsius and the wind in
  km/h, and the wind chill index of Environment Canada's formula,
  13.12 + 0.6215 T - 11.37 V^0.16 + 0.3965 T V^0.16 (T <= 10 °C, V >= 5
  km/h), rounded to 0.1 as published: a curved regression of 300 points.
"""
import math
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent / "data"


def write(name, header, rows):
    lines = [",".join(header)] + [",".join(f"{v:.6g}" for v in row) for row in rows]
    (HERE / name).write_text("\n".join(lines) + "\n")


def main():
    HERE.mkdir(exist_ok=True)
    xs = [-math.pi + 2 * math.pi * k / 200 for k in range(201)]
    write("sine.csv", ["x", "y"], [(x, math.sin(x)) for x in xs])

    rng = random.Random(20261202)
    days = []
    for _ in range(120):
        celsius = round(rng.uniform(-5.0, 35.0), 1)
        # The chance a person calls it warm rises from 0 to 1 around 20 °C.
        p_warm = 1.0 / (1.0 + math.exp(-(celsius - 20.0) / 1.5))
        days.append((celsius, 1 if rng.random() < p_warm else 0))
    write("warm.csv", ["celsius", "warm"], days)

    chills = []
    for _ in range(300):
        celsius = round(rng.uniform(-40.0, 10.0), 1)
        wind = round(rng.uniform(5.0, 60.0), 1)
        v = wind**0.16
        chill = 13.12 + 0.6215 * celsius - 11.37 * v + 0.3965 * celsius * v
        chills.append((celsius, wind, round(chill, 1)))
    write("wind_chill.csv", ["celsius", "wind_kmh", "wind_chill"], chills)


if __name__ == "__main__":
    main()
