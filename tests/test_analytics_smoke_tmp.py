import _analytics_data as data


def test_smoke(client, engine):
    data.insert(engine)
    a = client.analytics
    for name, kw in [
        ("durations", {"by": "workflow"}),
        ("durations", {"by": ["tag", "status"], "freq": "1D"}),
        ("durations", {"freq": "1W"}),
        ("durations", {"freq": "1MS", "by": "workflow_version"}),
        ("queue_wait", {"by": "day"}),
        ("status_breakdown", {"by": "owner", "freq": "6h"}),
        ("status_breakdown", {"normalize": True}),
        ("tags", {}),
        ("tag_pairs", {}),
        ("throughput", {"freq": "1D"}),
        ("concurrency", {"freq": "1D"}),
        ("failures", {"by": "workflow_id"}),
        ("compare", {"until": "2026-03-15", "by": "workflow"}),
        ("summary", {"sort": "failure_rate"}),
    ]:
        f = getattr(a, name)(**kw)
        print(name, kw)
        print(f.head(8).to_string())
        print(f.dtypes.to_dict())


def test_smoke_rollups(client, engine):
    data.insert(engine)
    a = client.analytics
    print(a.refresh_rollups())
    for name, kw in [
        ("durations", {"by": "workflow"}),
        ("durations", {"by": ["tag", "status"], "freq": "1D"}),
        ("status_breakdown", {"by": "owner", "freq": "1D"}),
        ("throughput", {"freq": "1D"}),
    ]:
        f = getattr(a, name)(**kw, use_rollups=True)
        g = getattr(a, name)(**kw)
        print(name, kw, f.attrs)
        print(f.head(8).to_string())
        print(g.head(8).to_string())
