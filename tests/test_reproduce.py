from paperlib.study.reproduce import update_times

HEADER = "notebook\tprofile\tminutes\testimated_minutes\tcpu\tprecision\n"


def test_update_times_keeps_one_sorted_row_per_notebook():
    text = update_times("", "02_b.ipynb", "mini", 3.14159, 2.5, "AMD EPYC", "fp32")
    assert text == HEADER + "02_b.ipynb\tmini\t3.14\t2.50\tAMD EPYC\tfp32\n"
    text = update_times(text, "01_a.ipynb", "mini", 1)
    text = update_times(text, "02_b.ipynb", "smoke", 0.5, 0.4, "Intel Xeon", "bf16")  # a rerun replaces its row
    assert text == HEADER + ("01_a.ipynb\tmini\t1.00\t-\t-\t-\n"
                             "02_b.ipynb\tsmoke\t0.50\t0.40\tIntel Xeon\tbf16\n")


def test_update_times_reads_the_old_appended_log():
    old = "01_a.ipynb\tmini\t0.13\n04_d.ipynb\tmini\t18.60\n04_d.ipynb\tmini\t20.00\n\n"
    text = update_times(old, "03_c.ipynb", "mini", 2)
    assert text.splitlines() == [HEADER.strip(), "01_a.ipynb\tmini\t0.13\t-\t-\t-",
                                 "03_c.ipynb\tmini\t2.00\t-\t-\t-", "04_d.ipynb\tmini\t20.00\t-\t-\t-"]


def test_update_times_reads_the_three_column_file():
    old = "notebook\tprofile\tminutes\n01_a.ipynb\tmini\t0.29\n"
    text = update_times(old, "02_b.ipynb", "mini", 5, 4, "AMD EPYC", "bf16")
    assert text.splitlines()[1:] == ["01_a.ipynb\tmini\t0.29\t-\t-\t-",
                                     "02_b.ipynb\tmini\t5.00\t4.00\tAMD EPYC\tbf16"]
