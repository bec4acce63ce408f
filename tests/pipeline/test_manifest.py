from pipeline.manifest import scrub_secrets


def test_secrets_in_the_job_config_do_not_reach_the_manifest():
    config = {"inputs": [{"type": "http", "url": "https://bob:hunter2@example.org/x", "api_key": "sk-123",
                          "headers": {"Authorization": "Bearer abc"}, "paths": ["/data/token-list.txt"]}],
              "writer": {"rejects": "all"}}
    clean = scrub_secrets(config)
    text = repr(clean)
    assert "hunter2" not in text and "sk-123" not in text and "Bearer abc" not in text
    assert clean["inputs"][0]["url"] == "https://bob:<redacted>@example.org/x"
    assert clean["inputs"][0]["paths"] == ["/data/token-list.txt"]
    assert clean["writer"] == {"rejects": "all"}
