import subprocess
import sys
from pathlib import Path

from sigma.shards import ShardSet
from sigma.tokenizer import END_OF_TEXT, end_of_text_id, load_tokenizer


def test_byte_level_bpe_round_trips_real_text(tokenizer_file, curated_man, curated_logs):
    tokenizer = load_tokenizer(tokenizer_file)
    assert tokenizer.get_vocab_size() == 512
    assert tokenizer.token_to_id(END_OF_TEXT) == end_of_text_id(tokenizer)
    for folder in (curated_man, curated_logs):
        for text in list(ShardSet.open(folder).iter_texts())[:5]:
            ids = tokenizer.encode(text).ids
            assert tokenizer.decode(ids) == text
            assert len(ids) < len(text.encode())  # merges were learned
    unseen = "café ☃ \x00\x7f 日本語"  # bytes never seen in training still encode (byte-level)
    assert tokenizer.decode(tokenizer.encode(unseen).ids) == unseen


def test_cli_writes_the_tokenizer_beside_the_manifest(curated_logs, tmp_path, subprocess_env):
    import shutil

    data = tmp_path / "logs"
    shutil.copytree(curated_logs, data)
    done = subprocess.run(
        [sys.executable, "-m", "sigma.model_commands", "tokenizer", "train", "--data", str(data), "--vocab-size", "300"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[2], env=subprocess_env,
    )
    assert (data / "tokenizer.json").exists() and "tokenizer.json" in done.stdout
    assert load_tokenizer(data).get_vocab_size() == 300
