import mcpp

wf = mcpp.Workflow("etl", max_concurrent=4)


@wf.step(timeout=30, retries=2)
def extract(rows: int = 1000) -> list[int]:
    return list(range(rows))


@wf.step(depends_on=[extract])
def transform(extract: list[int]) -> int:
    return sum(extract)


if __name__ == "__main__":  # required, see below
    result = wf.run()  # blocking; or: await wf.run_async() inside trio
    print(result.status)  # "succeeded" | "failed" | "cancelled"
    print(result.steps["transform"].status, result.steps["transform"].result)
