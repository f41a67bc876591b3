from veerkracht_bayes.cli import app

app(prog_name="veerkracht-bayes")
