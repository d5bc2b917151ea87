"""`fastserve bench`'s arguments: bad ones exit 2 naming the option and what it expects."""

import pytest

from fastserve.cli import main

URL = "http://127.0.0.1:9"


@pytest.mark.parametrize(("args", "message"), [
    ([URL, "--rate", "100"], "--model NAME[,NAME...] is required"),
    ([URL, "--model", "churn"], "choose one of --rate R, --search or --sweep"),
    ([URL, "--model", "churn", "--rate", "-5"], "argument --rate: expected a number above 0, got '-5'"),
    ([URL, "--model", "churn", "--search"], "--search needs --slo"),
    ([URL, "--model", "churn", "--search", "--slo", "p98=1ms"], "argument --slo: expected PERCENTILE=TIME"),
    ([URL, "--model", "churn", "--sweep", "100,x"], "argument --sweep: expected a number above 0, got 'x'"),
    ([URL, "--model", "churn", "--rate", "1", "--sweep", "1,2"], "--sweep and --rate cannot go together"),
    ([URL, "--model", "churn", "--rate", "1", "--mix", "zipf"], "argument --mix: expected uniform or zipf:S"),
    ([URL, "--model", "churn", "--rate", "1", "--max-errors", "200%"], "argument --max-errors: expected a share"),
    ([URL, "--model", "churn", "--rate", "1", "--protocol", "v2", "--format", "tensor"],
     "--format applies to --protocol native"),
    ([URL, "--model", "churn", "--rate", "1", "--protocol", "grpc"], "argument --protocol: invalid choice: 'grpc'"),
    ([URL, "--model", "churn", "--rate", "1", "--header", "oops"], "argument --header: expected NAME:VALUE"),
    ([URL, "--model", "churn", "--rate", "1", "--plot", "x.pdf"], "--plot x.pdf: expected a .png or .html"),
    ([URL, "--model", "churn", "--rate", "1", "--out", "/nowhere/x.json"], "folder /nowhere does not exist"),
    (["https://127.0.0.1", "--model", "churn", "--rate", "1"], "argument URL: expected http://HOST[:PORT]"),
    ([URL, "--model", "a", "--rate", "1", "--compare", "b"], "argument --compare: expected NAME=URL"),
    ([URL, "--model", "a", "--rate", "1", "--connections", "2", "--procs", "4"], "fewer than --procs 4"),
    (["--model", "churn", "--rate", "1"], "give the server's URL"),
])
def test_bad_arguments_exit_2_with_a_clear_message(capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: fastserve bench") and message in err, err


def test_an_unreachable_server_says_so(capsys):
    assert main(["bench", URL, "--model", "churn", "--rate", "10", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach {URL}" in err and "is the server running there?" in err


def test_an_unknown_model_says_so(server, capsys):
    assert main(["bench", server.url, "--model", "nope", "--rate", "10", "--quiet"]) == 2
    assert "model 'nope' is unknown to the server" in capsys.readouterr().err


def test_data_that_does_not_fit_the_model_says_so(server, tmp_path, capsys):
    data = tmp_path / "rows.jsonl"
    data.write_text("[1, 2, 3]\n[4, 5, 6]\n")
    assert main(["bench", server.url, "--model", "churn_mlp", "--rate", "10", "--data", str(data), "--quiet"]) == 2
    assert "rows of 3 values, but model 'churn_mlp' takes 22 features per row" in capsys.readouterr().err
